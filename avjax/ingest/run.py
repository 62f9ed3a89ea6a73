"""Ingest of many titles: every title of an input not yet finished, resumably, in parallel.

A title is finished when its entry file `titles/<id>.json` exists (written last, after
records and index); the manifest is rebuilt from the entry files on every run (a damaged
one included), so a rerun of the same command completes an interrupted ingest. Finished
titles whose titles.csv row now says another kind, show or genres get their entry and
split re-derived (avjax.ingest.relabel); a title whose audio or video covers much less than
the other is reported under "partial" with the seconds dropped.

The driver (this module's `ingest`, never its workers) holds the output's lock
(avjax.ingest.lock) for the whole run, and only while holding it removes temporary files
that killed runs left behind. Each title may get a time limit (`title_timeout`): a title
over it is stopped, leaves nothing behind and is reported like any other skipped title.
"""

import glob
import multiprocessing
import os
import re
import signal
import threading
import time

from absl import logging

from avjax import console
from avjax import fileio
from avjax import storage
from avjax.data import records
from avjax.ingest import discover
from avjax.ingest import lock as lock_lib
from avjax.ingest import params as params_lib
from avjax.ingest import relabel as relabel_lib
from avjax.ingest import title as title_lib

# Temporaries: TitleWriter's "<name>.<pid>.tmp[.npy]", fileio.atomic_path's "<name>.*.tmp".
_TMP = re.compile(r"\.tmp(\.npy)?$")
_TMP_PID = re.compile(r"\.(\d+)\.tmp(\.npy)?$")

def finished_entries(dataset_dir):
  """Entries of finished titles: an entry file whose records and index exist (any store)."""
  entries = {}
  for path in storage.glob(storage.join(dataset_dir, records.TITLES_DIR, "*.json")):
    entry = storage.read_json(path)
    if all(storage.exists(storage.join(dataset_dir, entry[k])) for k in ("records", "index")):
      entries[entry["id"]] = entry
  return entries


def build_manifest(dataset_dir, params):
  """Writes manifest.json from the finished titles' entry files; returns it."""
  entries = finished_entries(dataset_dir)
  titles = [entries[k] for k in sorted(entries)]
  manifest = dict(format_version=records.FORMAT_VERSION, params=params, titles=titles)
  records.write_manifest(dataset_dir, manifest)
  return manifest


def remove_temporaries(dataset_dir):
  """Removes the temporaries of earlier, killed runs; returns their paths.

  Only the driver calls this, holding the output's lock, so no other ingest writes there;
  a temporary named after a process that still runs on this host (a killed driver's
  orphaned worker) is left alone all the same.
  """
  removed = []
  for folder in (dataset_dir, os.path.join(dataset_dir, records.TITLES_DIR)):
    for path in sorted(glob.glob(os.path.join(folder, "*.tmp*"))):
      if not _TMP.search(path) or not os.path.isfile(path):
        continue
      pid = _TMP_PID.search(path)
      pid = int(pid.group(1)) if pid else None
      if pid is not None and pid != os.getpid() and lock_lib.process_alive(pid):
        continue
      os.remove(path)
      removed.append(path)
  if removed:
    logging.info("removed %d temporary file(s) of earlier, interrupted runs", len(removed))
  return removed


def _worker_init():
  # Ctrl-C goes to the parent, which stops the pool; finished titles are already on disk.
  signal.signal(signal.SIGINT, signal.SIG_IGN)


class TitleTimeout(Exception):
  """A title took longer than its time limit."""


def _time_limited(seconds, fn, *args, **kwargs):
  """fn(*args, **kwargs), stopped with TitleTimeout after `seconds` (0: no limit).

  SIGALRM interrupts Python code between bytecodes (decoding returns to Python after each
  packet), so the title's writer aborts and leaves nothing behind. Only in a main thread.
  """
  if not seconds or threading.current_thread() is not threading.main_thread():
    return fn(*args, **kwargs)

  def alarm(signum, frame):
    del signum, frame
    raise TitleTimeout(f"over the time limit of {seconds:g} s (--title_timeout)")
  previous = signal.signal(signal.SIGALRM, alarm)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    return fn(*args, **kwargs)
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def _ingest_one(args):
  """(title, entry or None, reason or None); bad input never raises."""
  title, dataset_dir, params, threads, timeout = args
  meta = {k: title[k] for k in ("id", "kind", "show", "genres")}
  try:
    entry = _time_limited(timeout, title_lib.ingest_title, title["path"], dataset_dir, meta,
                          params, threads=threads)
    return title, entry, None
  except (title_lib.IngestError, TitleTimeout) as e:
    return title, None, str(e)
  except Exception as e:  # pylint: disable=broad-except
    return title, None, f"{type(e).__name__}: {e}"


def _manifest_params(dataset_dir):
  """The params of the existing manifest; None when there is none or it is damaged (it is
  rebuilt from the entry files, which are the truth)."""
  path = records.manifest_path(dataset_dir)
  if not os.path.exists(path):
    return None
  try:
    return fileio.read_json(path)["params"]
  except (ValueError, KeyError, TypeError) as e:
    logging.warning("%s is damaged (%s); rebuilding it from the entry files in %s", path,
                    str(e).split(": ", 1)[-1][:200], os.path.join(dataset_dir, records.TITLES_DIR))
    return None


def _start_output(dataset_dir, params):
  """Prepares `dataset_dir` for a (resumed) ingest; returns the finished titles' entries."""
  os.makedirs(os.path.join(dataset_dir, records.TITLES_DIR), exist_ok=True)
  old = _manifest_params(dataset_dir)
  if old is not None and old != params:
    raise ValueError(f"{dataset_dir} was ingested with params {old}, this run has {params}; "
                     "use the same flags to resume, or a new --output")
  remove_temporaries(dataset_dir)
  done = finished_entries(dataset_dir)
  build_manifest(dataset_dir, params)
  return done


def partial_coverage(entry, params):
  """{"video_seconds", "audio_seconds", "seconds_dropped"} when one track of a title covers
  much less than the other (the snippets stop where the shorter one does): at least a
  snippet and a tenth of the longer one dropped; else None."""
  video, audio = entry.get("video_seconds"), entry.get("audio_seconds")
  if video is None or audio is None:
    return None
  dropped = abs(video - audio)
  if dropped < max(records.snippet_seconds(params), 0.1 * max(video, audio)):
    return None
  return dict(video_seconds=video, audio_seconds=audio, seconds_dropped=round(dropped, 1))


def new_report(input_path, titles, already_done, relabelled=()):
  """An empty report of a run (the local and the Beam path write the same fields)."""
  return dict(input=storage.abspath(input_path), titles=titles, already_done=already_done,
              ingested=0, snippets=0, hours=0.0, failed=[], partial=[],
              relabelled=list(relabelled), interrupted=False)


def _count(report, title, entry, reason, params):
  """Adds one title's outcome to the report."""
  if entry is None:
    report["failed"].append(dict(title_id=title["id"], path=title["path"], reason=reason))
    logging.warning("skipped %s (%s): %s", title["path"], title["id"], reason)
  else:
    report["ingested"] += 1
    report["snippets"] += entry["num_snippets"]
    report["hours"] += entry["duration"] / 3600
    partial = partial_coverage(entry, params)
    if partial:
      report["partial"].append(dict(title_id=title["id"], path=title["path"], **partial))
      logging.warning("%s (%s): video covers %.1f s, audio %.1f s; the %.1f s past the "
                      "shorter one are dropped", title["path"], title["id"],
                      partial["video_seconds"], partial["audio_seconds"],
                      partial["seconds_dropped"])


def write_report(dataset_dir, params, report):
  """Rebuilds manifest.json from the entry files and writes ingest_report.json."""
  build_manifest(dataset_dir, params)
  report["hours"] = round(report["hours"], 4)
  report["failed"].sort(key=lambda f: f["title_id"])
  storage.write_json(storage.join(dataset_dir, records.REPORT), report)


def _size(title):
  return os.path.getsize(title["path"]) if os.path.isfile(title["path"]) else 0


def ingest(input_path, dataset_dir, *, metadata=None, workers=1, params=None, threads=None,
           progress=True, title_timeout=0.0):
  """Ingests every title under `input_path` not yet finished in `dataset_dir`.

  Returns the report that is also written to `DATASET_DIR/ingest_report.json`;
  its `failed` list names each skipped file and why. Raises lock.LockedError when
  another ingest is writing into `dataset_dir`.
  """
  params = params_lib.make_params(**(params or {}))
  titles = discover.discover(input_path, metadata)
  with lock_lib.IngestLock(dataset_dir):
    done = _start_output(dataset_dir, params)
    console.attach_log(dataset_dir)  # a command's log file, now that the input was found
    relabelled = relabel_lib.relabel(dataset_dir, done, titles, params["val_fraction"])
    if relabelled:
      build_manifest(dataset_dir, params)
    todo = [t for t in titles if t["id"] not in done]
    workers = max(1, min(workers, len(todo)))
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    report = new_report(input_path, len(titles), len(titles) - len(todo), relabelled)
    logging.info("%d titles, %d already done, %d to ingest with %d worker(s)", len(titles),
                 report["already_done"], len(todo), workers)
    bar = console.progress(total=sum(_size(t) for t in todo), unit="B", unit_scale=True,
                           desc="ingest", disable=not progress or not todo, smoothing=0.1)
    jobs = [(t, dataset_dir, params, threads, title_timeout) for t in todo]
    pool = None
    last_manifest = time.time()
    try:
      if workers == 1:
        results = map(_ingest_one, jobs)
      else:
        # Spawn, not fork: the parent has TensorFlow loaded, which does not survive a fork.
        # The workers' own output (library banners, their logging) goes to the log file;
        # this process reports their results.
        with console.children_output_to_log():
          pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init)
        results = pool.imap_unordered(_ingest_one, jobs)
      for i, (title, entry, reason) in enumerate(results):
        _count(report, title, entry, reason, params)
        bar.set_postfix_str(f"titles {i + 1}/{len(todo)}, {report['snippets']} snippets, "
                            f"{report['hours']:.2f} h, {len(report['failed'])} failed",
                            refresh=False)
        bar.update(_size(title))
        if time.time() - last_manifest > 30:  # entry files are the truth; this is a courtesy
          build_manifest(dataset_dir, params)
          last_manifest = time.time()
      if pool is not None:
        pool.close()
    except KeyboardInterrupt:
      report["interrupted"] = True
      raise
    finally:
      bar.close()
      if pool is not None:
        pool.terminate()  # a no-op after close(); stops workers mid-title after an interrupt
        pool.join()
      write_report(dataset_dir, params, report)
    return report
