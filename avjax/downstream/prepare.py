"""Prepares a downstream dataset once: every clip decoded into TFRecord shards.

`prepare` (run by `python -m avjax.prepare_downstream`) reads a dataset in its standard
layout (layouts.read_layout) and decodes every clip once with PyAV (avjax.media) into
TFRecord shards in the snippet record format of avjax.data.records (one record per whole clip: title_id = clip
id, all frames at 10 fps as JPEG, audio as 48 kHz mono int16), plus `manifest.json`
(classes, clips, splits) and `prepare_report.json` (clips listed but missing, unreadable,
unlisted). `load_prepared` reads and checks the manifest.

Layout of a prepared directory:
  OUT/manifest.json                  format, params, classes, clips, splits
  OUT/prepare_report.json            what was skipped and why
  OUT/titles/shard-NNNNN.tfrecord    one tf.train.Example per clip (example.encode_snippet)
  OUT/titles/shard-NNNNN.index.npy   record offsets (records.TitleWriter)
  OUT/shards/shard-NNNNN.json        the shard's clips; present exactly when it is complete
"""

import concurrent.futures
import multiprocessing
import os
import time

import numpy as np
from absl import logging

from avjax import console
from avjax import fileio
from avjax.data import config as data_config
from avjax.data import example
from avjax.data import records
from avjax.data import layouts
from avjax.media import decode

FORMAT = "avjax-downstream"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REPORT = "prepare_report.json"
SHARDS_DIR = "shards"

DEFAULT_PARAMS = dict(
    fps=10.0,          # Section 4.1: clips at 10 fps.
    short_side=226,    # the top of the [181, 226] scale jitter; larger costs disk only.
    sample_rate=data_config.SAMPLE_RATE,
    jpeg_quality=90,
    clips_per_shard=64,
)


def _shard_name(i):
  return f"shard-{i:05d}"


def _prepare_shard(task):
  """Decodes one shard's clips and writes their records; returns the shard's summary.

  A module-level function of plain data, so a process pool (or a distributed runner) can
  map it. The records are renamed into place only when the whole shard is written
  (records.TitleWriter); the summary JSON is written last and marks the shard complete.
  """
  out_dir, name, kind, clips, params = (task["output"], task["name"], task["kind"],
                                        task["clips"], task["params"])
  done, skipped = [], []
  t0 = time.time()
  with records.TitleWriter(out_dir, name) as writer:
    for clip_id, path in clips:
      try:
        if kind == "video":
          frames, duration = decode.decode_frames(path, fps=params["fps"],
                                                  short_side=params["short_side"],
                                                  jpeg_quality=params["jpeg_quality"])
          pcm = np.zeros(0, np.int16)  # the video tasks use f only
        else:
          frames = []
          pcm = decode.decode_audio(path, sample_rate=params["sample_rate"])
          duration = len(pcm) / params["sample_rate"]
      except decode.MediaError as e:
        logging.warning("%s: skipped (%s)", path, e)
        skipped.append(dict(id=clip_id, path=path, reason=str(e)))
        continue
      writer.write(example.encode_snippet(clip_id, 0, 0.0, frames, pcm))
      done.append(dict(id=clip_id, record=len(done), num_frames=len(frames),
                       num_samples=int(len(pcm)), duration=round(float(duration), 4)))
  rec, idx = records.record_paths(out_dir, name)
  summary = dict(name=name, records=rec, index=idx, planned=[c for c, _ in clips],
                 clips=done, skipped=skipped, params=params,
                 seconds=round(time.time() - t0, 2))
  fileio.write_json(os.path.join(out_dir, SHARDS_DIR, f"{name}.json"), summary)
  return summary


def _existing_shard(out_dir, name, planned, params):
  """The summary of a shard a previous run completed with the same plan, else None."""
  path = os.path.join(out_dir, SHARDS_DIR, f"{name}.json")
  if not os.path.exists(path):
    return None
  summary = fileio.read_json(path)
  same = summary.get("planned") == planned and summary.get("params") == params
  return summary if same and os.path.exists(os.path.join(out_dir, summary["records"])) else None


def _plan(layout, output, params):
  """(planned shards [[(clip id, path)]], finished summaries by name, tasks to run).

  Clip j goes to shard j mod S: every shard mixes all classes, splits and folds, so a
  shuffle that interleaves a few shards still yields well-mixed batches.
  """
  num_shards = max(1, -(-len(layout.clips) // params["clips_per_shard"]))
  planned = [[(c.id, c.path) for c in layout.clips[i::num_shards]] for i in range(num_shards)]
  summaries, tasks = {}, []
  for i, clips in enumerate(planned):
    name = _shard_name(i)
    summary = _existing_shard(output, name, [c for c, _ in clips], params)
    if summary is not None:
      summaries[name] = summary
    else:
      tasks.append(dict(output=output, name=name, kind=layout.kind, clips=clips,
                        params=params))
  return planned, summaries, tasks


def _run(tasks, workers, progress):
  """Yields the summary of each shard as it is prepared."""
  bar = _progress(len(tasks), progress)
  if workers > 1 and len(tasks) > 1:
    # spawn: TensorFlow and FFmpeg threads do not survive fork().
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      # Workers start on the first submit; their own output goes to the log file.
      with console.children_output_to_log():
        summaries = pool.map(_prepare_shard, tasks)
      for summary in summaries:
        bar(summary)
        yield summary
  else:
    for task in tasks:
      summary = _prepare_shard(task)
      bar(summary)
      yield summary


def _manifest(dataset, layout, params, names, summaries):
  """The prepared directory's manifest, and the clips that could not be decoded."""
  clips, unreadable = [], []
  labels = {c.id: c.label for c in layout.clips}
  for name in names:
    s = summaries[name]
    for c in s["clips"]:
      clips.append(dict(id=c["id"], label=labels[c["id"]], shard=name, record=c["record"],
                        num_frames=c["num_frames"], num_samples=c["num_samples"],
                        duration=c["duration"]))
    unreadable.extend(s["skipped"])
  present = {c["id"] for c in clips}
  splits = {str(s): {k: [c for c in ids if c in present] for k, ids in d.items()}
            for s, d in layout.splits.items()}
  manifest = dict(
      format=FORMAT, format_version=FORMAT_VERSION, dataset=dataset, kind=layout.kind,
      params=params, classes=layout.classes,
      shards=[dict(name=n, records=summaries[n]["records"], index=summaries[n]["index"],
                   num_clips=len(summaries[n]["clips"])) for n in names],
      clips=clips, splits=splits)
  return manifest, unreadable


def prepare(dataset, root, output, *, workers=1, fps=DEFAULT_PARAMS["fps"],
            short_side=DEFAULT_PARAMS["short_side"],
            sample_rate=DEFAULT_PARAMS["sample_rate"],
            jpeg_quality=DEFAULT_PARAMS["jpeg_quality"],
            clips_per_shard=DEFAULT_PARAMS["clips_per_shard"], progress=True):
  """Converts a dataset in its standard layout into a prepared directory (see module doc).

  Rerunning the same command skips complete shards (an interrupted run loses nothing
  finished). Clips that cannot be decoded are skipped, logged and listed with their
  reason in OUT/prepare_report.json; the manifest's splits leave them out.

  Returns:
    The report dict (counts and lists of missing, unreadable and unlisted clips).
  """
  layout = layouts.read_layout(dataset, root)
  if not layout.clips:
    raise FileNotFoundError(f"{root}: none of the {len(layout.missing)} clips named by the "
                            f"{dataset} split files exists, e.g. {layout.missing[0][1]}"
                            if layout.missing else f"{root}: the split files name no clips")
  output = os.path.abspath(output)
  os.makedirs(output, exist_ok=True)
  console.attach_log(output)  # a command's log file, now that the layout was read
  params = dict(fps=float(fps), short_side=int(short_side), sample_rate=int(sample_rate),
                jpeg_quality=int(jpeg_quality), clips_per_shard=int(clips_per_shard))
  planned, summaries, tasks = _plan(layout, output, params)
  logging.info("%s: %d clips in %d shards (%d already prepared) -> %s", dataset,
               len(layout.clips), len(planned), len(summaries), output)
  t0 = time.time()
  for summary in _run(tasks, workers, progress):
    summaries[summary["name"]] = summary
  manifest, unreadable = _manifest(dataset, layout, params,
                                   [_shard_name(i) for i in range(len(planned))], summaries)
  report = dict(
      dataset=dataset, root=os.path.abspath(root),
      counts=dict(listed=len(layout.clips) + len(layout.missing),
                  prepared=len(manifest["clips"]), missing=len(layout.missing),
                  unreadable=len(unreadable), unlisted=len(layout.unlisted)),
      missing=[dict(id=i, path=p) for i, p in layout.missing],
      unreadable=unreadable, unlisted=layout.unlisted,
      seconds=round(time.time() - t0, 2))
  fileio.write_json(os.path.join(output, REPORT), report)
  records.write_manifest(output, manifest)
  logging.info("%s: %d clips prepared, %d missing, %d unreadable, %d unlisted; report %s",
               dataset, len(manifest["clips"]), len(layout.missing), len(unreadable),
               len(layout.unlisted), os.path.join(output, REPORT))
  return report


def _progress(total, enabled):
  """A callback that advances a progress bar of shards (clips and skips as its postfix)."""
  bar = console.progress(total=total, unit="shard", desc="prepare",
                         disable=not enabled or not total)
  counts = dict(clips=0, skipped=0)

  def update(summary):
    counts["clips"] += len(summary["clips"])
    counts["skipped"] += len(summary["skipped"])
    bar.update(1)
    bar.set_postfix(counts)
    if bar.n == total:
      bar.close()
  return update


def load_prepared(data_dir):
  """Reads and checks OUT/manifest.json of a prepared directory."""
  path = os.path.join(data_dir, MANIFEST)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no manifest; prepare the dataset first "
                            "(python -m avjax.prepare_downstream --dataset=... --root=... "
                            f"--output={data_dir})")
  manifest = fileio.read_json(path)
  if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"{path}: format {manifest.get('format')!r} version "
                     f"{manifest.get('format_version')!r}; expected {FORMAT!r} version "
                     f"{FORMAT_VERSION}")
  for key in ("dataset", "kind", "params", "classes", "shards", "clips", "splits"):
    if key not in manifest:
      raise ValueError(f"{path}: missing key {key!r}")
  return manifest
