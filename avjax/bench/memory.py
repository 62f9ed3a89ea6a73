r"""Residual memory of the training step: what the forward pass keeps for the backward pass.

  python -m avjax.benchmark step --memory                    # paper model, bf16
  python -m avjax.benchmark step --memory --config=configs/step_benchmark.py:runlocal
  python -m avjax.benchmark step --memory --record           # into docs/benchmarks.md

The residuals of the differentiated loss (the arrays `jax.vjp` of the loss w.r.t. the
parameters hands from the forward to the backward pass) are what grows with the batch and
bounds the per-device batch size. They are read from the traced program
(`jax.make_jaxpr`: no compile, no compute), so any host gives the same figure. What XLA
then allocates differs both ways: it may fuse a cheap elementwise residual (a cast,
x - mean) into its consumers in the backward pass instead of keeping it, and it adds
temporaries; the accelerator's peak memory tells.

Counting: every residual once; a residual that is a reshape of another array (the
encoders' 2-D convs see their 5-D activations through free reshapes, which XLA lays out
as bitcasts of one buffer) counts as that array. Per sample = bytes at batch 2 - bytes at
batch 1, which separates what scales with the batch from what does not (conv kernels the
backward pass needs for input gradients, per-channel vectors): that fixed part is
reported apart.

The loss differentiated here is `avjax.pretrain.step.update_step`'s (forward with mutable
batch_stats, the remat policy of config.model.remat, Eq. 1 NCE), rebuilt from the same
parts; tests/test_fused_norm.py checks that both give the same loss and gradients.
Imports no TensorFlow.
"""

import collections
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from avjax import fileio
from avjax import losses
from avjax.bench import step as step_bench
from avjax.models import av
from avjax.models import remat as remat_lib

TITLE = "Training-step residual memory"

# Primitives that give another view of one buffer (XLA bitcasts), looked through.
_VIEWS = ("reshape", "squeeze", "expand_dims", "reduce_precision")


def loss_fn(model, loss_config, remat="none"):
  """`f(params, batch_stats, video, audio) -> loss` as update_step differentiates it."""
  def forward(variables, video, audio):
    return model.apply(variables, video, audio, train=True, mutable=["batch_stats"])
  forward = remat_lib.apply(forward, remat)

  def loss(params, batch_stats, video, audio):
    (z_video, z_audio), _ = forward({"params": params, "batch_stats": batch_stats},
                                    video, audio)
    return losses.nce_loss(z_video, z_audio, normalize=loss_config.normalize,
                           temperature=loss_config.temperature)
  return loss


def residuals(model_config, loss_config, video_shape, audio_shape):
  """The residuals of the loss's VJP w.r.t. params for one batch of the given shapes.

  Args:
    model_config: config.model (norm, remat, dtype, encoders).
    loss_config: config.loss.
    video_shape, audio_shape: full input shapes, batch first.
  Returns:
    A list of dicts (shape, dtype, bytes, source, distinct), one per residual as JAX
    lists them (`jax.ad_checkpoint.print_saved_residuals`); `distinct` is False for a
    reshape of an array that an earlier entry already holds.
  """
  model = av.build_model(model_config)
  loss = loss_fn(model, loss_config, model_config.get("remat", "none"))
  video = jax.ShapeDtypeStruct(video_shape, jnp.float32)
  audio = jax.ShapeDtypeStruct(audio_shape, jnp.float32)
  init_video = jax.ShapeDtypeStruct((1,) + tuple(video_shape[1:]), jnp.float32)
  init_audio = jax.ShapeDtypeStruct((1,) + tuple(audio_shape[1:]), jnp.float32)
  variables = jax.eval_shape(functools.partial(model.init, train=False),
                             jax.random.key(0), init_video, init_audio)

  def vjp(params, batch_stats, video, audio):
    return jax.vjp(lambda p: loss(p, batch_stats, video, audio), params)

  closed, out_shape = jax.make_jaxpr(vjp, return_shape=True)(
      variables["params"], variables["batch_stats"], video, audio)
  return _residuals(closed.jaxpr, len(jax.tree.leaves(out_shape[1])))


def _residuals(jaxpr, num_residuals):
  """The residual outputs of a VJP's jaxpr (its last `num_residuals` outputs)."""
  outs = jaxpr.outvars[len(jaxpr.outvars) - num_residuals:]
  producer = {v: e for e in jaxpr.eqns for v in e.outvars}

  def root(v, views=_VIEWS):
    while v in producer and producer[v].primitive.name in views:
      v = producer[v].invars[0]
    return v

  found, listed, roots = [], set(), set()
  for v in outs:
    aval = getattr(v, "aval", None)
    if aval is None or not hasattr(aval, "shape") or v in listed:
      continue
    listed.add(v)
    r = root(v) if not hasattr(v, "val") else v  # literals are their own buffers
    # Named after the op that computed it (JAX marks values a remat policy saves with
    # reduce_precision; look through those).
    eqn = producer.get(root(v, ("reduce_precision",)))
    found.append(dict(shape=tuple(aval.shape), dtype=str(aval.dtype),
                      bytes=int(np.prod(aval.shape, dtype=np.int64)) * aval.dtype.itemsize,
                      source=eqn.primitive.name if eqn is not None else "argument",
                      distinct=r not in roots))
    roots.add(r)
  return found


def _sum(found, key, only_distinct=True):
  out = collections.Counter()
  for r in found:
    if r["distinct"] or not only_distinct:
      out[r[key]] += r["bytes"]
  return out


def measure_one(model_config, loss_config, video_sample_shape, audio_sample_shape):
  """Residual bytes per sample (total, by dtype, as listed by JAX) and fixed."""
  found = [residuals(model_config, loss_config, (b,) + tuple(video_sample_shape),
                     (b,) + tuple(audio_sample_shape)) for b in (1, 2)]
  by_dtype = [_sum(f, "dtype") for f in found]
  dtypes = sorted(set(by_dtype[0]) | set(by_dtype[1]))
  per_sample = {d: by_dtype[1][d] - by_dtype[0][d] for d in dtypes}
  listed = [sum(_sum(f, "dtype", only_distinct=False).values()) for f in found]
  total = [sum(c.values()) for c in by_dtype]
  return dict(per_sample_bytes=total[1] - total[0], fixed_bytes=2 * total[0] - total[1],
              batch1_bytes=total[0], per_sample_listed_bytes=listed[1] - listed[0],
              per_sample_by_dtype={d: n for d, n in per_sample.items() if n})


def measure(config, video_sample_shape, audio_sample_shape, norms=("flax", "fused"),
            remats=("none", "convs")):
  """measure_one for every norm x remat setting over config.model. Returns a dict."""
  rows = []
  for norm in norms:
    for remat in remats:
      model_config = config.model.copy_and_resolve_references()
      model_config.norm = norm
      model_config.remat = remat
      r = measure_one(model_config, config.loss, video_sample_shape, audio_sample_shape)
      rows.append(dict(norm=norm, remat=remat, **r))
  return dict(video_encoder=config.model.video.name, audio_encoder=config.model.audio.name,
              dtype=str(config.model.dtype), video_shape=list(video_sample_shape),
              audio_shape=list(audio_sample_shape), jax=jax.__version__, rows=rows)


def _gib(n):
  return f"{n / 2**30:.3f}"


def to_markdown(r):
  """The table `--memory --record` writes."""
  video = "x".join(str(d) for d in r["video_shape"][:3])
  audio = "x".join(str(d) for d in r["audio_shape"][:2])
  lines = [
      f"Residuals of the differentiated update step (forward -> backward), counted from the "
      f"traced program (jax {r['jax']}; no compile, the same on any host): "
      f"{r['video_encoder']} + {r['audio_encoder']}, {r['dtype']} compute, video "
      f"{video}x3, audio {audio}x1 (mel x frames). Per sample: bytes at batch 2 minus "
      "batch 1, a reshape of a kept array counted once (XLA bitcasts it); fixed: what does "
      "not grow with the batch (bf16 copies of conv kernels, per-channel vectors; float32 "
      "parameters under remat). Last column: every residual as "
      "`jax.ad_checkpoint.print_saved_residuals` lists it (there a layer's output that the "
      "next conv keeps through a reshape is listed twice). XLA may fuse cheap residuals "
      "into their consumers instead of keeping them, and adds temporaries.",
      "",
      "| norm | remat | GiB per sample | float32 | bfloat16 | bool | fixed GiB "
      "| total at batch 1 | per sample, reshapes counted again |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for row in r["rows"]:
    by = row["per_sample_by_dtype"]
    lines.append(f"| {row['norm']} | {row['remat']} | **{_gib(row['per_sample_bytes'])}** | "
                 f"{_gib(by.get('float32', 0))} | {_gib(by.get('bfloat16', 0))} | "
                 f"{_gib(by.get('bool', 0))} | {_gib(row['fixed_bytes'])} | "
                 f"{_gib(row['batch1_bytes'])} | {_gib(row['per_sample_listed_bytes'])} |")
  return "\n".join(lines)


def run(flags_values):
  """`python -m avjax.benchmark step --memory`: the table; step_memory.json to --workdir."""
  # The step benchmark's config (configs/step_benchmark.py unless --config names another):
  # the paper model, optimizer and input shapes.
  config = flags_values.config
  video_shape, audio_shape = step_bench.input_shapes(config, 1)
  result = measure(config, video_shape[1:], audio_shape[1:])
  workdir = getattr(flags_values, "workdir", None)
  if workdir:
    fileio.write_json(os.path.join(workdir, "step_memory.json"), result)
  return to_markdown(result)
