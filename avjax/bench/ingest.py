r"""Ingest speed in multiples of real time per core, on 720p H.264 + AAC input.

  python -m avjax.benchmark ingest [--minutes=1] [--steps=3] [--workdir=DIR] [--record]

Generates a 1280x720, 24 fps synthetic title with film grain (so that the H.264
bitrate and decoding work are like a real movie's), then times `ingest_title` in
this one process with one decoder thread: content seconds per wall second (and per
CPU second) of one process.
"""

import os
import shutil
import tempfile
import time

from absl import logging
import av

from avjax.ingest import params as params_lib
from avjax.synthetic import plan as synthetic_plan
from avjax.synthetic import render as synthetic_render
from avjax.ingest import title as title_lib

TITLE = "Ingest"
OPTIONS = synthetic_plan.Options(width=1280, height=720, fps=24.0, sample_rate=48000, grain=5.0)


def _input(workdir, minutes):
  """The benchmark title; reused from the workdir when it is already there."""
  path = os.path.join(workdir, f"ingest_benchmark_720p_{minutes:g}min_grain{OPTIONS.grain:g}.mp4")
  if not os.path.exists(path):
    plan = synthetic_plan.plan_collection(movies=1, shows=0, episodes=0, minutes=minutes, seed=0,
                                     options=OPTIONS)[0]
    plan["style"]["channels"] = 2  # films are at least stereo
    start = time.perf_counter()
    synthetic_render.render_title(plan, path, OPTIONS)
    logging.info("generated %s in %.1f s", path, time.perf_counter() - start)
  return path


def _decode_only(path):
  """CPU seconds to demux and decode both streams, nothing else: the floor under ingest."""
  start = time.process_time()
  with av.open(path) as c:
    c.streams.video[0].thread_type = "SLICE"
    c.streams.video[0].codec_context.thread_count = 1
    for packet in c.demux(c.streams.video[0], c.streams.audio[0]):
      for _ in packet.decode():
        pass
  return time.process_time() - start


def run(FLAGS):  # pylint: disable=invalid-name
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="avjax_ingest_bench_")
  os.makedirs(workdir, exist_ok=True)
  try:
    return _run(workdir, FLAGS.minutes or 1.0, max(1, FLAGS.steps or 3))
  finally:
    if not FLAGS.workdir:
      shutil.rmtree(workdir, ignore_errors=True)


def _run(workdir, minutes, repeats):
  path = _input(workdir, minutes)
  params = params_lib.make_params()
  meta = dict(id="bench", kind="movie", show=None, genres=[])
  runs = []
  for _ in range(repeats):
    out = tempfile.mkdtemp(dir=workdir)
    wall, cpu = time.perf_counter(), time.process_time()
    entry = title_lib.ingest_title(path, out, meta, params, threads=1)
    runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    size = os.path.getsize(os.path.join(out, entry["records"]))
    shutil.rmtree(out)
  wall, cpu = min(runs, key=lambda r: r[0])
  decode = _decode_only(path)
  content = entry["duration"]
  with av.open(path) as c:
    bitrate = c.bit_rate / 1e6
  load = os.getloadavg()[0]
  verdict = "meets" if content / wall >= 4 else "misses"
  return "\n".join([
      f"Input: {OPTIONS.width}x{OPTIONS.height} H.264 (CRF {OPTIONS.crf}, film grain) at "
      f"{OPTIONS.fps:g} fps + AAC stereo 48 kHz, {bitrate:.1f} Mb/s, {content:.0f} s of content; "
      f"output {params['short_side']}-px JPEG frames at {params['fps']:g} fps + 48 kHz PCM. "
      f"`ingest_title` in one process with one decoder thread, best of {repeats}.",
      "",
      "| measure | seconds | x real time per core |",
      "|---|---|---|",
      f"| **ingest, wall time** | {wall:.2f} | **{content / wall:.1f}** "
      f"({verdict} the 4x target) |",
      f"| ingest, CPU time | {cpu:.2f} | {content / cpu:.1f} |",
      f"| demux + decode alone, CPU time | {decode:.2f} | {content / decode:.1f} |",
      "",
      f"{entry['num_snippets']} snippets, {size / entry['num_snippets'] / 1e6:.2f} MB each "
      f"({size / content * 3600 / 1e9:.2f} GB per hour of content). Load average during the "
      f"run: {load:.1f} on {os.cpu_count()} cores; where that exceeds the core count, wall "
      "time includes waiting for a core and the CPU-time figure is what a free core sustains.",
  ])
