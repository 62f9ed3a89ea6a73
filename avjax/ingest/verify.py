"""Whole-dataset check: every record's framing and CRC32C, every index against its file.

  python -m avjax.ingest --verify=DATASET_DIR [--repair]

Reads each title's records file front to back (sequential, so fast) and checks that the
index matches the records (contiguous, the same lengths, ending at the end of the file) and
that every record's length and data CRC32C are right. `repair=True` removes the entry
files `titles/<id>.json` of the damaged titles and drops them from the manifest, so that a
rerun of the same ingest command ingests them again (and training meanwhile leaves them
out). Repair takes the output's ingest lock (on local disk; a dataset on a bucket, which
the Beam ingest writes without a lock, is repaired without one). Files are read through
avjax.storage, so a dataset on a bucket (gs://, s3://) is verified in place. Needs no
TensorFlow.
"""

import contextlib

from absl import logging

from avjax import storage
from avjax.data import records
from avjax.ingest import lock as lock_lib


def entry_files(dataset_dir):
  """{title id: entry} of the finished titles' entry files."""
  out = {}
  for path in storage.glob(storage.join(dataset_dir, records.TITLES_DIR, "*.json")):
    try:
      entry = storage.read_json(path)
      out[entry["id"]] = entry
    except (ValueError, KeyError, TypeError):
      out[storage.basename(path)[:-len(".json")]] = None
  return out


def title_damage(dataset_dir, entry):
  """What is wrong with a title's files (reads all of them), or None."""
  problem = records.title_problem(dataset_dir, entry)
  if problem:
    return problem
  index = records.load_index(storage.join(dataset_dir, entry["index"]))
  path = storage.join(dataset_dir, entry["records"])
  expected = 0
  with storage.open(path, "rb") as f:
    for m, (offset, length) in enumerate(index):
      if offset != expected:
        return f"index entry {m} starts at byte {offset}, the records put it at {expected}"
      try:
        records.read_record(f, offset, length, path=path)
      except records.CorruptRecordError as e:
        return f"snippet {m}: {e}"
      expected = int(offset) + int(length) + records.FRAMING_BYTES
  return None


def verify_dataset(dataset_dir, *, repair=False):
  """Checks every title of the manifest and of the entry files; returns the report.

  Report: checked_titles, checked_snippets, damaged {title id: problem}, repaired [ids].
  """
  manifest = records.load_manifest(dataset_dir)
  entries = {t["id"]: t for t in manifest["titles"]}
  for tid, entry in entry_files(dataset_dir).items():
    entries.setdefault(tid, entry)
  damaged, snippets = {}, 0
  for tid in sorted(entries):
    entry = entries[tid]
    if entry is None:
      damaged[tid] = f"entry file titles/{tid}.json is unreadable"
      continue
    snippets += entry["num_snippets"]
    problem = title_damage(dataset_dir, entry)
    if problem:
      damaged[tid] = problem
  report = dict(dataset=storage.abspath(dataset_dir), checked_titles=len(entries),
                checked_snippets=snippets, damaged=damaged, repaired=[])
  if repair and damaged:
    if storage.is_local(dataset_dir):
      guard = lock_lib.IngestLock(dataset_dir, purpose="repair")
    else:
      logging.warning("%s: repairing a dataset on a bucket without a lock; make sure no "
                      "ingest writes into it meanwhile", dataset_dir)
      guard = contextlib.nullcontext()
    with guard:
      for tid in sorted(damaged):
        path = storage.join(dataset_dir, records.TITLES_DIR, f"{tid}.json")
        if storage.exists(path):
          storage.remove(path)
      manifest["titles"] = [t for t in manifest["titles"] if t["id"] not in damaged]
      records.write_manifest(dataset_dir, manifest)
      report["repaired"] = sorted(damaged)
  return report


def summary(report):
  """The lines the command prints."""
  head = (f"{report['dataset']}: {report['checked_titles']} titles, "
          f"{report['checked_snippets']} snippets")
  if not report["damaged"]:
    return [f"{head}: no damage"]
  lines = [f"{head}; {len(report['damaged'])} damaged title(s):"]
  lines += [f"  {tid}: {why}" for tid, why in sorted(report["damaged"].items())]
  if report["repaired"]:
    lines.append("removed their entry files and manifest entries; rerun the same "
                 "`python -m avjax.ingest` command to ingest them again")
  else:
    lines.append("--repair removes their entry files so that a rerun of ingest redoes them")
  return lines
