"""Embeddings of snippets through f, g and the heads (jitted, sharded over the data axis), and
BatchNorm statistics recalibrated on data for a random initialisation."""

import functools

import jax
import numpy as np
from jax.experimental import multihost_utils

from avjax import console
from avjax import sharding
from avjax.evals import inputs as inputs_lib
from avjax.models import heads

# Flax's BatchNorm momentum in the encoders and heads (models/layers.py, heads.py): the
# weight of the running average in `running = m * running + (1 - m) * batch`.
BN_MOMENTUM = 0.9


def _embed(module, video, audio):
  """Pooled f, g and the head outputs z_v, z_a; each encoder runs once."""
  fmap_v = module.video_encoder(video, train=False)
  fmap_a = module.audio_encoder(audio, train=False)
  return dict(f=heads.global_average_pool(fmap_v), g=heads.global_average_pool(fmap_a),
              z_video=module.video_head(fmap_v, train=False),
              z_audio=module.audio_head(fmap_a, train=False))


@functools.partial(jax.jit, static_argnames=("model",))
def _embed_batch(variables, video, audio, *, model):
  return model.apply(variables, video, audio, method=_embed)


def _gather(x):
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def embed_iterator(model, variables, iterator, mesh, *, desc="embed", with_inputs=False):
  """Runs every batch of an eval iterator through f, g and the heads (with a progress bar
  named `desc`).

  Returns a dict of numpy arrays over the real (unmasked) snippets: f, g, z_video, z_audio
  [S, ...], title_index, snippet_index [S]; with `with_inputs`, also the raw-input feature
  sets of avjax.evals.inputs ("input/video_pixels", ...) of the same snippets.
  """
  variables = jax.device_put(variables, sharding.replicated(mesh))
  parts = {}
  bar = console.progress(iterator, desc=desc, unit="batch", leave=False,
                         total=getattr(iterator, "num_batches", None),
                         disable=jax.process_index() != 0)
  for batch in bar:
    raw = inputs_lib.input_features(batch["video"], batch["audio"]) if with_inputs else {}
    batch = sharding.host_to_global(batch, mesh)
    out = _embed_batch(variables, batch["video"], batch["audio"], model=model)
    out.update(title_index=batch["title_index"], snippet_index=batch["snippet_index"],
               mask=batch["mask"])
    out.update({f"input/{name}": sharding.host_to_global({"x": x}, mesh)["x"]
                for name, x in raw.items()})
    for key, value in out.items():
      parts.setdefault(key, []).append(_gather(value))
  if not parts:
    raise ValueError("the eval iterator yielded no batches (no held-out snippets)")
  out = {k: np.concatenate(v) for k, v in parts.items()}
  keep = out.pop("mask").astype(bool)
  return {k: v[keep] for k, v in out.items()}


@functools.partial(jax.jit, static_argnames=("model",))
def _batch_stats(variables, video, audio, *, model):
  """The running statistics one train-mode pass moves from `variables`' own."""
  _, updates = model.apply(variables, video, audio, train=True, mutable=["batch_stats"])
  return updates["batch_stats"]


@jax.jit
def _add_batch_stats(total, moved, start):
  """`total` (None at first) plus one batch's statistics, taken from the running ones."""
  # running = m * start + (1 - m) * batch, so the batch statistics come back exactly.
  stats = jax.tree.map(lambda new, old: (new - BN_MOMENTUM * old) / (1 - BN_MOMENTUM),
                       moved, start)
  return stats if total is None else jax.tree.map(lambda a, b: a + b, total, stats)


def recalibrate_batch_stats(model, variables, iterator, mesh, *, max_batches=None):
  """`variables` with every BatchNorm's running mean and variance replaced by the average
  of its batch statistics over the full batches of `iterator` (training-mode passes, each
  layer seeing the outputs of the layers before it normalised by their batch statistics).

  A random initialisation's running statistics are mean 0 and variance 1, which its
  activations are far from: evaluated as they are, its features measure BatchNorm's
  miscalibration as much as the weights. Recalibrated, the random-init baseline is on equal
  footing with trained encoders, whose statistics come from data.
  """
  variables = jax.device_put(variables, sharding.replicated(mesh))
  start = variables["batch_stats"]
  total, count = None, 0
  for batch in iterator:
    if not np.all(np.asarray(batch["mask"])):
      continue  # padded rows would enter the statistics
    batch = sharding.host_to_global(batch, mesh)
    moved = _batch_stats(variables, batch["video"], batch["audio"], model=model)
    total = _add_batch_stats(total, moved, start)
    count += 1
    if max_batches and count >= max_batches:
      break
  if not count:
    raise ValueError("BatchNorm recalibration: no full batch of snippets to average over")
  mean = jax.tree.map(lambda x: x / count, jax.device_get(total))  # on the host: no compiles
  return dict(jax.device_get(variables), batch_stats=mean)
