"""Input pipeline benchmark: snippets per second per CPU core and peak host memory.

  python -m avjax.benchmark input [--dataset=DIR] [--batch=GROUPS] [--steps=N] [--record]
      [--crc=both|on|off] [--num_parallel=2,4,8]

The reader checks every record's CRC32C (data.verify_records). `--crc=both` (the default)
measures the pipeline with and without the check in the same run, the two iterators taking
turns in rounds so that both see the same load, and adds the CRC's own CPU time per
snippet. `--num_parallel` measures instead the decode calls in flight (data.num_parallel):
the default and each value given, taking turns in the same way, under a heading of its own
(DECODE_TITLE).

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
import numpy as np

from avjax.data import config as data_config
from avjax.data import fake
from avjax.data import ops
from avjax.data import pipeline
from avjax.data import records

TITLE = "Input pipeline"
DECODE_TITLE = "Input pipeline: decode parallelism"

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


def _measure_together(configs, groups, steps, rounds):
  """Rates of several configs measured in turns: `rounds` rounds, in each of which every
  config runs alone for steps / rounds batches, so that a change of machine load hits all
  of them alike. Each turn builds its own pipeline, warms it up and closes it after: a
  pipeline left open between turns would go on decoding into its prefetch buffer in the
  background, on the other turns' time."""
  wall, cpu = [0.0] * len(configs), [0.0] * len(configs)
  per_round = max(1, steps // rounds)
  for r in range(rounds):
    # ABBA...: the order alternates, so a setting gains nothing from going first.
    for i in (range(len(configs)) if r % 2 == 0 else reversed(range(len(configs)))):
      c = configs[i]
      it = pipeline.make_train_iterator(c, global_batch_size=groups * c.k, process_index=0,
                                        process_count=1, num_local_devices=1)
      for _ in range(_WARMUP):
        next(it)
      t0, cpu0 = time.perf_counter(), time.process_time()
      for _ in range(per_round):
        batch = next(it)
      wall[i] += time.perf_counter() - t0
      cpu[i] += time.process_time() - cpu0
      it.close()
  snippets = rounds * per_round * groups * configs[0].k
  shapes = {k: tuple(v.shape[1:]) for k, v in batch.items()}
  return [dict(rate=snippets / w, cpu_per_snippet=c / snippets, shapes=shapes)
          for w, c in zip(wall, cpu)]


def _crc_seconds_per_snippet(dataset, count=256):
  """(CPU seconds of one record's CRC32C checks, mean record bytes) on stored records."""
  manifest = records.load_manifest(dataset)
  titles = manifest["titles"]
  with records.SnippetReader(dataset, manifest) as reader:
    data = [reader.read(titles[i % len(titles)]["id"],
                        (i // len(titles)) % titles[i % len(titles)]["num_snippets"])
            for i in range(64)]
  t0 = time.process_time()
  for i in range(count):
    d = data[i % len(data)]
    records.masked_crc(d[:8])  # the length field
    records.masked_crc(d)
  return (time.process_time() - t0) / count, float(np.mean([len(d) for d in data]))


def _reader_seconds_per_snippet(dataset, alternations=15, count=96):
  """{verify: median thread-CPU seconds per snippet read by SnippetReader}, the two reader
  settings taking turns (`alternations` times `count` random reads each).

  Thread CPU time and the median leave out other processes' load, which on a shared
  machine is larger than the check itself in the pipeline's throughput."""
  manifest = records.load_manifest(dataset)
  titles = manifest["titles"]
  rng = np.random.default_rng(0)
  picks = [(t["id"], int(rng.integers(t["num_snippets"])))
           for t in (titles[i] for i in rng.integers(len(titles), size=count))]
  readers = {v: records.SnippetReader(dataset, manifest, verify=v) for v in (True, False)}
  times = {True: [], False: []}
  try:
    for a in range(alternations):
      for verify in ((True, False) if a % 2 == 0 else (False, True)):
        t0 = time.thread_time()
        for tid, m in picks:
          readers[verify].read(tid, m)
        times[verify].append((time.thread_time() - t0) / count)
  finally:
    for reader in readers.values():
      reader.close()
  return {v: float(np.median(t)) for v, t in times.items()}


def _config(dataset, **overrides):
  """The default data config on `dataset`, with `overrides`."""
  config = data_config.default_config()
  config.dataset = [dataset]
  config.update(overrides)
  return config


def section(flags):
  """The heading of docs/benchmarks.md that this run's figures go under."""
  return DECODE_TITLE if getattr(flags, "num_parallel", None) else TITLE


def _decode_parallelism(dataset, groups, steps, values, cores):
  """The default data.num_parallel against each of `values`, in interleaved rounds."""
  settings = [-1] + [int(n) for n in values if int(n) != -1]
  configs = [_config(dataset, num_parallel=n) for n in settings]
  rounds = max(1, min(4, steps))
  results = _measure_together(configs, groups, steps, rounds)
  lines = [
      "Both input pipelines run a fixed number of decode calls in flight "
      "(`data.num_parallel`; -1, the default, is two per core) instead of tf.data's "
      "autotuning: with autotuning on, dropping an iterator waited for the tuner's sleep "
      "(TensorFlow 2.21: seconds to a minute), which every run, evaluation pass and restart "
      "paid.",
      "",
      f"Training pipeline at the default data config, {groups} groups x k=16 per batch, "
      f"{rounds * max(1, steps // rounds)} timed batches per setting in {rounds} rounds (the "
      f"order alternating), each turn a fresh pipeline after {_WARMUP} warm-up batches; "
      f"{cores} cores usable.",
      "",
      "| data.num_parallel | decode calls in flight | snippets/s | CPU ms per snippet |",
      "|---|---|---|---|",
  ]
  for n, r in zip(settings, results):
    name = f"{n} (the default)" if n == -1 else str(n)
    lines.append(f"| {name} | {ops.parallel_calls(n)} | {r['rate']:.1f} | "
                 f"{1e3 * r['cpu_per_snippet']:.1f} |")
  return lines


def run(flags):
  groups = flags.batch or 4
  steps = flags.steps or 20
  dataset, scratch = flags.dataset, None
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
  if getattr(flags, "num_parallel", None):
    lines = _decode_parallelism(dataset, groups, steps, flags.num_parallel, cores)
    if scratch:
      shutil.rmtree(scratch, ignore_errors=True)
    load = os.getloadavg()[0]
    return "\n".join(lines + ["", f"Load average during the run: {load:.1f} on {cores} cores."])

  crc = getattr(flags, "crc", None) or "both"
  settings = [("default (k=16, w=M_n)" + (", CRC checked" if crc == "both" else ""),
               dict(verify_records=crc != "off"))]
  if crc == "both":
    settings.append(("default, CRC not checked", dict(verify_records=False)))
  settings.append(("color jitter sigma=1.0", dict(color_jitter=1.0, verify_records=crc != "off")))
  configs = [_config(dataset, **overrides) for _, overrides in settings]
  rounds = max(1, min(8, steps)) if crc == "both" else 1
  results = _measure_together(configs[:2], groups, steps, rounds) if crc == "both" else []
  for config in configs[len(results):]:
    results += _measure_together([config], groups, steps, 1)
  rows = [(name, r) for (name, _), r in zip(settings, results)]
  seconds, size = _crc_seconds_per_snippet(dataset)
  reader = _reader_seconds_per_snippet(dataset)
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
  lines += ["", f"CRC32C checks of a record ({size / 1e3:.0f} KB, {records.crc_implementation()} "
            f"implementation): {1e3 * seconds:.3f} ms CPU per snippet, "
            f"{100 * seconds / rows[0][1]['cpu_per_snippet']:.1f}% of the pipeline's CPU time "
            "per snippet."]
  extra = reader[True] - reader[False]
  lines.append(f"Reading a snippet (SnippetReader, random access, median thread CPU): "
               f"{1e3 * reader[True]:.3f} ms with the check, {1e3 * reader[False]:.3f} ms "
               f"without: {1e3 * extra:+.3f} ms, {100 * extra / rows[0][1]['cpu_per_snippet']:+.1f}% "
               "of the pipeline's CPU time per snippet.")
  if crc == "both":
    on, off = rows[0][1]["rate"], rows[1][1]["rate"]
    cpu_on, cpu_off = rows[0][1]["cpu_per_snippet"], rows[1][1]["cpu_per_snippet"]
    lines.append(f"Throughput with the check {on:.1f} vs {off:.1f} snippets/s without: "
                 f"{100 * (off - on) / off:+.1f}% cost ({rounds} interleaved rounds each; "
                 "differences within a few percent are load noise on a shared machine). "
                 f"CPU time per snippet with the check {1e3 * cpu_on:.2f} vs "
                 f"{1e3 * cpu_off:.2f} ms without: {100 * (cpu_on - cpu_off) / cpu_off:+.1f}% "
                 "(less sensitive to other processes' load).")
  lines += [
      "",
      f"Peak host memory (peak RSS{'' if reset else ', including dataset generation'}): "
      f"{_peak_rss_mib():.0f} MiB. Load average during the run: {load:.1f} on {cores} cores "
      "(other processes share them; snippets per CPU-second is the rate a fully available "
      "core sustains). Target: >= 50 snippets/s per core.",
  ]
  return "\n".join(lines)
