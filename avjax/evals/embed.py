"""Embeddings of snippets through f, g and the heads (jitted, sharded over the data axis)."""

import functools

import jax
import numpy as np
from jax.experimental import multihost_utils

from avjax import console
from avjax import sharding
from avjax.models import heads


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


def embed_iterator(model, variables, iterator, mesh, *, desc="embed"):
  """Runs every batch of an eval iterator through f, g and the heads (with a progress bar
  named `desc`).

  Returns a dict of numpy arrays over the real (unmasked) snippets: f, g, z_video, z_audio
  [S, ...], title_index, snippet_index [S].
  """
  variables = jax.device_put(variables, sharding.replicated(mesh))
  parts = {}
  bar = console.progress(iterator, desc=desc, unit="batch", leave=False,
                         total=getattr(iterator, "num_batches", None),
                         disable=jax.process_index() != 0)
  for batch in bar:
    batch = sharding.host_to_global(batch, mesh)
    out = _embed_batch(variables, batch["video"], batch["audio"], model=model)
    out.update(title_index=batch["title_index"], snippet_index=batch["snippet_index"],
               mask=batch["mask"])
    for key, value in out.items():
      parts.setdefault(key, []).append(_gather(value))
  if not parts:
    raise ValueError("the eval iterator yielded no batches (no held-out snippets)")
  out = {k: np.concatenate(v) for k, v in parts.items()}
  keep = out.pop("mask").astype(bool)
  return {k: v[keep] for k, v in out.items()}
