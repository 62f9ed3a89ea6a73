"""Input pipeline benchmark: snippets per second per CPU core and peak host memory.

  python -m avjax.benchmark input [--dataset=DIR] [--batch=GROUPS] [--steps=N] [--record]

Runs the training pipeline at the default data config (k = 16, 16 frames, shorter side
190 -> random 158x158 crop, 96x300 log-mel with band dropout) for --steps host batches of
--batch groups, after a warm-up, and divides the rate by the cores this process may use.
Without --dataset it first writes a generated dataset (avjax.data.fake: 338x190 JPEG
frames of about 17 KB, as ingest stores them) under --workdir or a temporary dir. Peak
memory is the process's peak resident set size (VmHWM on Linux, reset after generating the
dataset; getrusage's ru_maxrss elsewhere).
"""

import os
import resource
import shutil
import tempfile
import time

from absl import logging

from avjax.data import config as data_config
from avjax.data import fake
from avjax.data import pipeline

TITLE = "Input pipeline"

_WARMUP = 3


def _reset_peak_rss():
  """Resets the kernel's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _peak_rss_mib():
  """Peak resident set size: VmHWM (follows a reset) where there is one, else ru_maxrss."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cores():
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _measure(config, groups, steps):
  it = pipeline.make_train_iterator(config, global_batch_size=groups * config.k,
                                    process_index=0, process_count=1, num_local_devices=1)
  for _ in range(_WARMUP):
    next(it)
  t0 = time.perf_counter()
  cpu0 = time.process_time()
  for _ in range(steps):
    batch = next(it)
  wall = time.perf_counter() - t0
  cpu = time.process_time() - cpu0
  it.close()
  snippets = steps * groups * config.k
  return dict(rate=snippets / wall, cpu_per_snippet=cpu / snippets,
              shapes={k: tuple(v.shape[1:]) for k, v in batch.items()})


def run(flags):
  groups = flags.batch or 4
  steps = flags.steps or 20
  dataset = flags.dataset
  scratch = None
  if not dataset:
    root = flags.workdir or tempfile.mkdtemp(prefix="avjax_input_bench_")
    scratch = None if flags.workdir else root
    dataset = os.path.join(root, "dataset")
    if not os.path.exists(os.path.join(dataset, "manifest.json")):
      logging.info("writing a generated dataset to %s", dataset)
      fake.make_fake_dataset(dataset, fake.title_specs(movies=12, snippets_per_title=40,
                                                       val_movies=0),
                             short_side=190, aspect=16 / 9)
  cores = _cores()
  reset = _reset_peak_rss()

  rows = []
  for name, overrides in (("default (k=16, w=M_n)", {}),
                          ("color jitter sigma=1.0", dict(color_jitter=1.0))):
    config = data_config.default_config()
    config.dataset = [dataset]
    for key, value in overrides.items():
      config[key] = value
    rows.append((name, _measure(config, groups, steps)))
  if scratch:
    shutil.rmtree(scratch, ignore_errors=True)

  load = os.getloadavg()[0]
  shapes = rows[0][1]["shapes"]
  lines = [
      f"Training pipeline, {groups} groups x k=16 = {groups * 16} snippets per batch, "
      f"{steps} timed batches after {_WARMUP} warm-up; {cores} cores usable; "
      f"video {shapes['video']}, audio {shapes['audio']} per snippet; "
      f"dataset: {'generated 338x190 JPEG frames' if not flags.dataset else flags.dataset}.",
      "",
      "| setting | snippets/s | snippets/s per core | CPU ms per snippet | "
      "snippets per CPU-second |",
      "|---|---|---|---|---|",
  ]
  for name, r in rows:
    lines.append(f"| {name} | {r['rate']:.1f} | {r['rate'] / cores:.1f} | "
                 f"{1e3 * r['cpu_per_snippet']:.1f} | {1 / r['cpu_per_snippet']:.0f} |")
  lines += [
      "",
      f"Peak host memory (peak RSS{'' if reset else ', including dataset generation'}): "
      f"{_peak_rss_mib():.0f} MiB. Load average during the run: {load:.1f} on {cores} cores "
      "(other processes share them; snippets per CPU-second is the rate a fully available "
      "core sustains). Target: >= 50 snippets/s per core.",
  ]
  return "\n".join(lines)
