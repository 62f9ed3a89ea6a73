r"""Training-step benchmark: the jitted update step on synthetic on-device batches.

  python -m avjax.benchmark step --batch=64                  # paper model and shapes, bf16
  python -m avjax.benchmark step --config=configs/step_benchmark.py:remat=convs --batch=128
  python -m avjax.benchmark step --config=configs/step_benchmark.py \
      --config.model.dtype=float32 --batch=32
  python -m avjax.benchmark step --config=configs/step_benchmark.py:runlocal --steps=20  # CPU
  python -m avjax.benchmark step --config=configs/pretrain.py:k=16

No input pipeline: a batch of random video (B, T, S, S, 3) and log-mel audio
(B, mel_bins, audio_frames, 1) is made on the devices once, sharded like the trainer's,
and fed to `avjax.pretrain.step.update_step` jitted exactly as the training loop jits it
(avjax.sharding.jit_update: state replicated and donated, batch split over the "data"
mesh axis). B = --batch (per device) x devices. The step is traced, lowered and compiled
explicitly, so compile time is measured apart from the steps; after warm-up, every step is
timed to `block_until_ready` and the median is reported. With no --config, the command
reads configs/step_benchmark.py. Nothing here imports TensorFlow.
The encoders' BatchNorm: --config.model.norm=flax|fused (avjax/models/fused_norm.py).
"""

import functools
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avjax import fileio
from avjax import optim
from avjax import sharding
from avjax.bench import flops
from avjax.bench import hlo as hlo_lib
from avjax.models import av
from avjax.pretrain import step as pretrain_step

TITLE = "Training step"

# Measured bf16 dense matmul rate of the H100 reference (ENVIRONMENT.md), for the MFU line.
H100_BF16_TFLOPS = 798.0
# A snippet is 16 frames at 5 fps (paper Section 4).
SNIPPET_SECONDS = 3.2


# ---------------------------------------------------------------------------
# Model, state and the compiled step.


def input_shapes(config, batch):
  """(video, audio) shapes for `batch` samples from config.data.

  Reads this file's fields (num_frames, crop_size, mel_bins, audio_frames) or, for a
  pipeline config (configs/pretrain.py), derives the spectrogram frames from its
  sample_rate and hop: ceil(3.2 s x sample_rate / hop) = 300 at 48 kHz, hop 512.
  """
  data = config.data
  t, s = int(data.get("num_frames", 16)), int(data.get("crop_size", 158))
  mel = int(data.get("mel_bins", 96))
  if "audio_frames" in data:
    frames = int(data.audio_frames)
  elif "hop" in data and "sample_rate" in data:
    frames = math.ceil(round(SNIPPET_SECONDS * data.sample_rate) / data.hop)
  else:
    frames = 300
  return (batch, t, s, s, 3), (batch, mel, frames, 1)


def synthetic_batch(rng, video_shape, audio_shape):
  """Random normalized video and log-mel audio, float32 (the pipeline's output types)."""
  kv, ka = jax.random.split(rng)
  return dict(video=jax.random.normal(kv, video_shape, jnp.float32),
              audio=jax.random.normal(ka, audio_shape, jnp.float32))


def setup_step(config, per_device_batch, mesh=None):
  """Builds state, batch and the traced update step as the training loop jits it.

  Returns:
    A dict: state, batch (global jax.Arrays), traced (`jax.stages.Traced`), jitted,
    model, mesh, global_batch, video_shape, audio_shape, trace_s.
  """
  mesh = mesh or sharding.make_mesh()
  global_batch = per_device_batch * mesh.size
  model = av.build_model(config.model)
  opt_config = ml_collections.ConfigDict(dict(
      batch_size=global_batch, num_epochs=1, total_steps=1000,
      optimizer=config.optimizer.to_dict()))
  schedule = optim.make_schedule(opt_config, global_batch * 1000)
  tx = optim.adam(opt_config, schedule)
  video_shape, audio_shape = input_shapes(config, global_batch)
  init = functools.partial(pretrain_step.init_state, model=model, tx=tx,
                           video_shape=(1,) + video_shape[1:],
                           audio_shape=(1,) + audio_shape[1:])
  rng = jax.random.key(config.get("seed", 0))
  _, state_shardings = sharding.replicated_state(init, mesh)
  state = sharding.init_state(init, rng, state_shardings)
  batch = jax.jit(functools.partial(synthetic_batch, video_shape=video_shape,
                                    audio_shape=audio_shape),
                  out_shardings=sharding.batch_sharding(mesh))(jax.random.fold_in(rng, 1))
  jitted = sharding.jit_update(
      functools.partial(pretrain_step.update_step, model=model, tx=tx, schedule=schedule,
                        loss_config=config.loss, remat=config.model.remat),
      mesh, state_shardings)
  t0 = time.perf_counter()
  traced = jitted.trace(state, batch)
  return dict(state=state, batch=batch, traced=traced, jitted=jitted, model=model,
              mesh=mesh, global_batch=global_batch, video_shape=video_shape,
              audio_shape=audio_shape, trace_s=time.perf_counter() - t0)


# ---------------------------------------------------------------------------
# Measurement.


def _peak_memory_bytes():
  peaks = []
  for d in jax.local_devices():
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if stats and "peak_bytes_in_use" in stats:
      peaks.append(int(stats["peak_bytes_in_use"]))
  return max(peaks) if peaks else None


def _xla_flops(compiled):
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost or cost["flops"] <= 0:
    return None
  return float(cost["flops"])


def _planned_memory_bytes(compiled):
  """XLA's buffer plan of the step per device: arguments + outputs + temporaries - aliased."""
  try:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    return None


def _time_steps(compiled, state, batch, warmup_steps, steps):
  """(final state, per-step seconds, last loss): each step timed to block_until_ready."""
  for _ in range(warmup_steps):
    state, m = compiled(state, batch)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, m = compiled(state, batch)
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t0)
  loss = float(m["loss"])
  if not np.isfinite(loss):
    raise FloatingPointError(f"non-finite loss {loss} in the benchmark step")
  return state, times, loss


def measure(config, per_device_batch=None, steps=None, warmup_steps=None, mesh=None):
  """Compiles and times the update step. Returns a dict of figures (JSON-able)."""
  per_device_batch = (per_device_batch or config.get("per_device_batch", 0)
                      or (64 if jax.devices()[0].platform != "cpu" else 2))
  steps = int(steps or config.get("steps", 20))
  warmup_steps = int(config.get("warmup_steps", 3) if warmup_steps is None else warmup_steps)
  s = setup_step(config, per_device_batch, mesh)
  b = s["global_batch"]
  n_dev = s["mesh"].size

  t0 = time.perf_counter()
  lowered = s["traced"].lower()
  lower_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0

  per_sample = flops.layers(s["model"], (1,) + s["video_shape"][1:], (1,) + s["audio_shape"][1:],
                            train=False)
  analytic = flops.train_flops(per_sample)
  jaxpr_per_sample = flops.jaxpr_flops(s["traced"].jaxpr) / b
  xla = _xla_flops(compiled)
  # The SPMD-compiled module is one device's program: its FLOPs cover its own shard.
  xla_per_sample = xla / per_device_batch if xla else None

  state, times, loss = _time_steps(compiled, s["state"], s["batch"], warmup_steps, steps)

  step_s = statistics.median(times)
  params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state["params"]))
  hlo = compiled.as_text() if n_dev > 1 else ""
  dev = jax.devices()[0]
  return dict(
      device=dev.device_kind, platform=dev.platform, devices=n_dev,
      jax=jax.__version__, per_device_batch=per_device_batch, global_batch=b,
      video_shape=list(s["video_shape"][1:]), audio_shape=list(s["audio_shape"][1:]),
      video_encoder=config.model.video.name, audio_encoder=config.model.audio.name,
      dtype=str(config.model.dtype), remat=config.model.remat,
      norm=config.model.get("norm", "flax"), params=params,
      steps=steps, warmup_steps=warmup_steps,
      step_time_s=step_s, step_time_p10_s=float(np.percentile(times, 10)),
      step_time_p90_s=float(np.percentile(times, 90)),
      samples_per_s=b / step_s, samples_per_s_per_device=b / step_s / n_dev,
      trace_s=s["trace_s"], lower_s=lower_s, compile_s=compile_s,
      peak_memory_bytes=_peak_memory_bytes(), planned_memory_bytes=_planned_memory_bytes(compiled),
      analytic_gflop_per_sample=analytic / 1e9,
      analytic_forward_gflop_per_sample=flops.forward_flops(per_sample) / 1e9,
      jaxpr_gflop_per_sample=jaxpr_per_sample / 1e9,
      xla_gflop_per_sample=xla_per_sample / 1e9 if xla_per_sample else None,
      tflops_per_device=analytic * b / step_s / n_dev / 1e12,
      loss=loss,
      collectives={k: list(v) for k, v in hlo_lib.collective_summary(hlo).items()} if hlo else None,
      collective_ops=hlo_lib.collectives(hlo) if hlo else None)


def _fmt_bytes(n):
  return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def to_markdown(r):
  """The figures as a markdown table (what --record writes)."""
  video = "x".join(str(d) for d in r["video_shape"][:3])
  audio = "x".join(str(d) for d in r["audio_shape"][:2])
  xla = (f"{r['xla_gflop_per_sample']:.4g}" if r["xla_gflop_per_sample"] is not None
         else "n/a")
  rows = [
      ("device", f"{r['devices']}x {r['device']} ({r['platform']}), jax {r['jax']}"),
      ("model", f"{r['video_encoder']} + {r['audio_encoder']}, {r['params']:,} params, "
                f"{r['dtype']} compute / float32 params, norm={r.get('norm', 'flax')}, "
                f"remat={r['remat']}"),
      ("inputs", f"video {video}x3, audio {audio}x1 (mel x frames)"),
      ("batch", f"{r['per_device_batch']} per device, {r['global_batch']} global"),
      ("samples/s", f"{r['samples_per_s']:.1f} ({r['samples_per_s_per_device']:.1f} per device)"),
      ("step time (median)", f"{r['step_time_s'] * 1e3:.1f} ms "
                             f"(p10 {r['step_time_p10_s'] * 1e3:.1f}, p90 "
                             f"{r['step_time_p90_s'] * 1e3:.1f}; {r['steps']} steps after "
                             f"{r['warmup_steps']} warm-up)"),
      ("compile time", f"{r['compile_s']:.1f} s (+ trace {r['trace_s']:.1f} s, "
                       f"lower {r['lower_s']:.1f} s)"),
      ("peak device memory", f"{_fmt_bytes(r['peak_memory_bytes'])} (XLA's buffer plan: "
                             f"{_fmt_bytes(r['planned_memory_bytes'])})"),
      ("GFLOP per sample, fwd+bwd", f"analytic {r['analytic_gflop_per_sample']:.4g} "
                                    f"(3 x {r['analytic_forward_gflop_per_sample']:.4g} fwd); "
                                    f"jaxpr {r['jaxpr_gflop_per_sample']:.4g}; XLA {xla}"),
      ("achieved", f"{r['tflops_per_device']:.3g} TFLOP/s per device (analytic count)"
                   + (f", {r['tflops_per_device'] / H100_BF16_TFLOPS:.0%} of the H100's "
                      f"{H100_BF16_TFLOPS:.0f} TFLOP/s bf16 matmul"
                      if "H100" in r["device"] else "")),
  ]
  if r.get("collectives"):
    rows.append(("collectives", "; ".join(
        f"{op} x{n} ({b / 2**20:.2f} MiB)" for op, (n, b) in sorted(r["collectives"].items()))))
  lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
  if r["platform"] == "cpu":
    lines = ["**CPU run**: a functional check of the benchmark, not comparable to accelerator "
             "figures.", ""] + lines
  return "\n".join(lines)


def run(flags_values):
  """`python -m avjax.benchmark step`: measures, writes step.json to --workdir if set."""
  config = flags_values.config  # configs/step_benchmark.py unless --config names another
  result = measure(config, per_device_batch=flags_values.batch, steps=flags_values.steps)
  workdir = getattr(flags_values, "workdir", None)
  if workdir:
    fileio.write_json(os.path.join(workdir, "step.json"), result)
  return to_markdown(result)
