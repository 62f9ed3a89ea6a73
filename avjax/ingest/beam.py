r"""Ingest on Apache Beam: one element per title, the local path's per-title ingest, any runner.

  python -m avjax.ingest --input=gs://B/movies --output=gs://B/ds --runner=DataflowRunner \
      --beam_pipeline_options="project=P,region=R,temp_location=gs://B/tmp"

The driver finds the titles (avjax.ingest.discover) and prepares the output (`start_run`).
Each worker ingests a title with the same `ingest_title` as the local path, into local
scratch space (PyAV reads a local file, so a title on a bucket is copied there first).
It then copies the records and index to the output under unique temporary names,
renames them onto their final names, and writes the title's entry file last: as on the
local path, an entry file marks a title done, on any file system, object stores
included. A retried or duplicated bundle re-ingests into its own scratch space and
renames the same bytes onto the same names, so it can neither duplicate nor corrupt a
title; a title whose entry file is there is not ingested again. The last step writes
manifest.json and ingest_report.json exactly as the local path does.
"""

import contextlib
import os
import shutil
import tempfile
import time

from absl import logging
import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options import pipeline_options as options_lib

from avjax import storage
from avjax.data import records
from avjax.ingest import discover
from avjax.ingest import lock as lock_lib
from avjax.ingest import params as params_lib
from avjax.ingest import relabel as relabel_lib
from avjax.ingest import run as run_lib

NAMESPACE = "avjax.ingest"


# ---------------------------------------------------------------------------
# The driver.


def start_run(input_path, output, params, metadata=None):
  """The driver's start of a run: (all titles, titles still to ingest, the finished titles
  relabelled by titles.csv edits).

  Runs once, before any worker: checks that belong before a run (the output's params,
  and anything else a run must hold to, e.g. that no other ingest writes there) go here.
  """
  titles = discover.discover(input_path, metadata)
  storage.makedirs(storage.join(output, records.TITLES_DIR))
  if storage.exists(records.manifest_path(output)):
    old = storage.read_json(records.manifest_path(output)).get("params")
    if old != params:
      raise ValueError(f"{output} was ingested with params {old}, this run has {params}; "
                       "use the same flags to resume, or a new --output")
  if storage.is_local(output):  # called holding the output's lock (ingest)
    run_lib.remove_temporaries(output)
  done = run_lib.finished_entries(output)
  relabelled = []
  if storage.is_local(output):  # titles.csv edits reach finished titles (ingest.relabel)
    relabelled = relabel_lib.relabel(output, done, titles, params["val_fraction"])
  run_lib.build_manifest(output, params)
  return titles, [t for t in titles if t["id"] not in done], relabelled


def pipeline_options(runner, beam_pipeline_options="", workers=1):
  """Beam's options from --runner and the one comma-separated --beam_pipeline_options.

  `workers` > 1 runs the DirectRunner on that many processes unless the options say
  otherwise.
  """
  args = [f"--runner={runner}"]
  for item in filter(None, (s.strip() for s in (beam_pipeline_options or "").split(","))):
    args.append(item if item.startswith("--") else f"--{item}")
  given = {a[2:].split("=", 1)[0] for a in args}
  if runner in ("DirectRunner", "direct") and workers > 1 and "direct_num_workers" not in given:
    args += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
  options = options_lib.PipelineOptions(args)
  known = set(options.get_all_options())
  unknown = sorted(g for g in given if g not in known)
  if unknown:
    raise ValueError(f"--beam_pipeline_options: unknown Beam option(s) {unknown}")
  return options


def build(pipeline, todo, output, params, *, threads=1, report=None):
  """Adds the ingest of `todo` (title dicts) to `pipeline`; its last step writes the report."""
  results = (pipeline
             | "Titles" >> beam.Create(todo, reshuffle=False)
             | "Spread" >> beam.Reshuffle()  # one title per worker, not all on one
             | "Ingest" >> beam.ParDo(IngestTitle(output, params, threads)))
  _ = (results
       | "Collect" >> beam.combiners.ToList()
       | "Finish" >> beam.Map(finish, output=output, params=params, report=report))
  return results


def ingest(input_path, output, *, runner, beam_pipeline_options="", metadata=None, params=None,
           threads=None, workers=1):
  """Ingests every title under `input_path` not yet finished in `output`, on Beam.

  Returns the report, also in `OUTPUT/ingest_report.json` (the local path's format).
  An output on local disk takes the same lock as the local path (lock.LockedError when
  another ingest writes there); object stores have no exclusive create, so none there.
  """
  params = params_lib.make_params(**(params or {}))
  options = pipeline_options(runner, beam_pipeline_options, workers)
  guard = (lock_lib.IngestLock(output) if storage.is_local(output)
           else contextlib.nullcontext())
  with guard:
    titles, todo, relabelled = start_run(input_path, output, params, metadata)
    report = run_lib.new_report(input_path, len(titles), len(titles) - len(todo), relabelled)
    logging.info("%d titles, %d already done, %d to ingest on %s", len(titles),
                 report["already_done"], len(todo), runner)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, todo, output, params, threads=threads or 1, report=report)
    result = pipeline.run()
    result.wait_until_finish()
    print_metrics(result)
    return storage.read_json(storage.join(output, records.REPORT))


def print_metrics(result):
  """Prints the run's counters (titles done, snippets, skipped by reason); returns them."""
  try:
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
  except (NotImplementedError, AttributeError, KeyError) as e:  # a runner without metrics
    logging.info("no Beam metrics from this runner (%s)", e)
    return {}
  totals = {}
  for m in found:
    value = m.committed if m.committed is not None else m.attempted
    totals[m.key.metric.name] = totals.get(m.key.metric.name, 0) + (value or 0)
  if totals:
    print("Beam metrics: " + ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))
  return totals


# ---------------------------------------------------------------------------
# The last step.


def finish(results, *, output, params, report):
  """Writes manifest.json (from the entry files) and ingest_report.json; returns the report."""
  report = dict(report, failed=list(report["failed"]), partial=list(report.get("partial", [])))
  for r in results:
    title = dict(id=r["id"], path=r["path"])
    entry = None if r["reason"] else {key: r.get(key) for key in (
        "num_snippets", "duration", "video_seconds", "audio_seconds")}
    run_lib._count(report, title, entry, r["reason"], params)  # pylint: disable=protected-access
  run_lib.write_report(output, params, report)
  return report


# ---------------------------------------------------------------------------
# The workers.


def reason_key(reason):
  """A short counter name for a skip reason: 'cannot open: ...' -> 'cannot_open'."""
  head = reason
  for stop in (":", "(", "0123456789"):
    for ch in stop:
      head = head.split(ch, 1)[0]
  head = head.strip().removesuffix(" near").strip().lower() or "other"
  return "_".join(head.split())


def _entry_path(output, title_id):
  return storage.join(output, records.TITLES_DIR, f"{title_id}.json")


def _finished(output, title_id):
  """The title's entry if it is complete in `output` (a retry of a finished bundle), or None."""
  path = _entry_path(output, title_id)
  if not storage.exists(path):
    return None
  entry = storage.read_json(path)
  return entry if all(storage.exists(storage.join(output, entry[k]))
                      for k in ("records", "index")) else None


def _stage(path, scratch):
  """A local copy of a title on a bucket (PyAV reads local files); a local path as it is."""
  if storage.is_local(path):
    return path
  os.makedirs(os.path.join(scratch, "input"))
  local = os.path.join(scratch, "input", storage.basename(path))
  storage.copy(path, local)
  return local


def ingest_to(title, output, params, threads=1):
  """Ingests one title into `output` (any file system): (entry, reason), one of them None.

  The records and index are ingested into local scratch space, then published (copied
  under a unique temporary name and renamed); the entry file goes last.
  """
  scratch = tempfile.mkdtemp(prefix="avjax-ingest-")
  try:
    try:
      local = _stage(title["path"], scratch)
    except FileNotFoundError as e:
      return None, f"cannot read: {e}"
    local_out = os.path.join(scratch, "output")
    job = (dict(title, path=local), local_out, params, threads, 0.0)  # no time limit
    _, entry, reason = run_lib._ingest_one(job)  # pylint: disable=protected-access
    if entry is None:  # reasons name the title's own path, not the scratch copy's
      return None, reason.replace(local, title["path"])
    entry["source"] = storage.abspath(title["path"])
    for key in ("records", "index"):
      storage.publish(os.path.join(local_out, entry[key]), storage.join(output, entry[key]))
    storage.write_json(_entry_path(output, title["id"]), entry)  # last: the title is done
    return entry, None
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


class IngestTitle(beam.DoFn):
  """Ingests one title per element; yields its outcome and counts it in Beam metrics."""

  def __init__(self, output, params, threads=1):
    super().__init__()
    self.output, self.params, self.threads = output, params, threads
    self.done = Metrics.counter(NAMESPACE, "titles_done")
    self.skipped = Metrics.counter(NAMESPACE, "titles_skipped")
    self.snippets = Metrics.counter(NAMESPACE, "snippets")
    self.content = Metrics.counter(NAMESPACE, "content_seconds")
    self.seconds = Metrics.distribution(NAMESPACE, "title_wall_ms")

  def process(self, title):
    start = time.perf_counter()
    entry, reason = _finished(self.output, title["id"]), None
    if entry is None:
      entry, reason = ingest_to(title, self.output, self.params, self.threads)
    else:
      logging.info("%s: already in %s", title["id"], self.output)
    wall = time.perf_counter() - start
    self.seconds.update(int(wall * 1000))
    if entry is None:
      self.skipped.inc()
      Metrics.counter(NAMESPACE, "skipped_" + reason_key(reason)).inc()
      logging.info("skipped %s (%s): %s", title["path"], title["id"], reason)
      yield dict(id=title["id"], path=title["path"], reason=reason)
      return
    self.done.inc()
    self.snippets.inc(entry["num_snippets"])
    self.content.inc(int(round(entry["duration"])))
    logging.info("ingested %s: %d snippets, %.1f s of content in %.1f s (%.1fx real time)",
                 title["id"], entry["num_snippets"], entry["duration"], wall,
                 entry["duration"] / max(wall, 1e-9))
    yield dict(id=title["id"], path=title["path"], reason=None,
               num_snippets=entry["num_snippets"], duration=entry["duration"],
               video_seconds=entry.get("video_seconds"), audio_seconds=entry.get("audio_seconds"))
