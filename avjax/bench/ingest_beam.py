r"""Ingest on Beam's DirectRunner against the local path: x real time per core, same input.

  python -m avjax.benchmark ingest_beam [--titles=4] [--minutes=1] [--workers=1] [--record]

Copies the 720p benchmark title of `ingest` (avjax/bench/ingest.py) to `--titles`
movies, then runs `python -m avjax.ingest` on them twice in fresh processes, one after
the other: the local path with `--workers` processes, and the DirectRunner with as many
worker processes (multi_processing), each title with one decoder thread. Wall time
counts everything a user waits for (start-up, TensorFlow imports, the manifest); CPU
time is that of the command and all its worker processes. The two datasets must be
byte-identical.
"""

import filecmp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from avjax.bench import ingest as ingest_bench
from avjax.data import records

TITLE = "Ingest on Beam"
DIRECT = "DirectRunner"


def _children_cpu():
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _time(cmd):
  """(wall seconds, CPU seconds of the command and its waited-for children)."""
  wall, cpu = time.perf_counter(), _children_cpu()
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
  return time.perf_counter() - wall, _children_cpu() - cpu


def _same_dataset(a, b):
  manifest = records.load_manifest(a)
  if manifest != records.load_manifest(b):
    return False
  paths = [t[k] for t in manifest["titles"] for k in ("records", "index")]
  _, mismatch, errors = filecmp.cmpfiles(a, b, paths, shallow=False)
  return not mismatch and not errors


def run(FLAGS):  # pylint: disable=invalid-name
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="avjax_ingest_beam_bench_")
  os.makedirs(workdir, exist_ok=True)
  try:
    return _run(workdir, FLAGS.minutes or 1.0, FLAGS.titles or 4, FLAGS.workers or 1)
  finally:
    if not FLAGS.workdir:
      shutil.rmtree(workdir, ignore_errors=True)


def _run(workdir, minutes, n_titles, workers):
  source = ingest_bench._input(workdir, minutes)  # pylint: disable=protected-access
  collection = os.path.join(workdir, f"beam_bench_{n_titles}x{minutes:g}min")
  os.makedirs(os.path.join(collection, "movies"), exist_ok=True)
  for i in range(n_titles):
    path = os.path.join(collection, "movies", f"title{i:03d}.mp4")
    if not os.path.exists(path):
      shutil.copyfile(source, path)
  base = [sys.executable, "-m", "avjax.ingest", f"--input={collection}", "--threads=1",
          f"--workers={workers}", "--noprogress"]
  figures = {}
  for name, extra in (("local path", []),
                      (f"{DIRECT}, multi_processing",
                       [f"--runner={DIRECT}", "--beam_pipeline_options=direct_running_mode="
                        f"multi_processing,direct_num_workers={workers}"])):
    out = os.path.join(workdir, f"out_{len(figures)}")
    shutil.rmtree(out, ignore_errors=True)
    figures[name] = _time(base + [f"--output={out}"] + extra) + (out,)
  outs = [f[2] for f in figures.values()]
  identical = _same_dataset(*outs)
  manifest = records.load_manifest(outs[0])
  content = sum(t["duration"] for t in manifest["titles"])
  load, usable = os.getloadavg()[0], len(os.sched_getaffinity(0))
  rows = [f"| {name} | {wall:.1f} | **{content / (wall * workers):.1f}** | {cpu:.1f} | "
          f"{content / cpu:.1f} |" for name, (wall, cpu, _) in figures.items()]
  (lw, lc, _), (bw, bc, _) = figures.values()
  return "\n".join([
      f"Input: {n_titles} copies of the `ingest` benchmark title ({content / n_titles:.0f} s of "
      f"720p H.264 + AAC each, {content:.0f} s in all). `python -m avjax.ingest` in a fresh "
      f"process, {workers} worker process{'es' if workers > 1 else ''}, one decoder thread per "
      "title; wall time from "
      "start to exit.",
      "",
      "| path | wall s | x real time per core (wall) | CPU s | x real time per CPU-second |",
      "|---|---|---|---|---|",
      *rows,
      "",
      f"DirectRunner / local path: {bw / lw:.2f}x the wall time, {bc / lc:.2f}x the CPU time. "
      f"Datasets byte-identical: {'yes' if identical else 'NO'}. Load average during the run: "
      f"{load:.1f} on {os.cpu_count()} cores, {usable} of them usable by this run.",
  ])
