"""Cross-modal noise-contrastive loss (paper Equation 1) and its in-batch metrics.

With s_ij = z_v^i . z_a^j over a (global) batch of B audio-visual pairs, element i has the
positive s_ii and the negatives N_i = {s_ij, s_ji : j != i} (both modalities), so

  L = (1/B) sum_i [ logsumexp({s_ii} u {s_ij : j != i} u {s_ji : j != i}) - s_ii ].

The paper works in an unnormalized embedding space with no temperature (Section 3);
`normalize=True` is its ablation (Table 2): l2-normalized embeddings divided by tau.
"""

import chex
import jax
import jax.numpy as jnp


def similarities(z_video, z_audio, *, normalize=False, temperature=1.0):
  """s_ij = z_v^i . z_a^j in float32, [B, B]."""
  # Row i of one is paired with row i of the other: both [B, d] (checked when traced).
  chex.assert_rank([z_video, z_audio], 2)
  chex.assert_equal_shape([z_video, z_audio])
  z_video = z_video.astype(jnp.float32)
  z_audio = z_audio.astype(jnp.float32)
  if normalize:
    z_video = z_video / jnp.linalg.norm(z_video, axis=-1, keepdims=True).clip(1e-12)
    z_audio = z_audio / jnp.linalg.norm(z_audio, axis=-1, keepdims=True).clip(1e-12)
  s = jnp.einsum("id,jd->ij", z_video, z_audio, precision=jax.lax.Precision.HIGHEST)
  if normalize:
    s = s / temperature
  return s


def nce_loss(z_video, z_audio, *, normalize=False, temperature=1.0):
  """Equation 1 over the whole batch: a float32 scalar.

  Args:
    z_video: [B, d] video embeddings h_f(f(v)).
    z_audio: [B, d] audio embeddings h_g(g(a)), row i paired with z_video[i].
    normalize: l2-normalize both and divide by `temperature` (ablation only).
    temperature: tau, used only when `normalize`.
  """
  s = similarities(z_video, z_audio, normalize=normalize, temperature=temperature)
  b = s.shape[0]
  # Row i holds s_ii and s_ij; column i holds s_ji. Mask the diagonal of the column
  # copy so s_ii enters the logsumexp once. logsumexp keeps |s| ~ 1e4 finite.
  off_diag_cols = jnp.where(jnp.eye(b, dtype=bool), -jnp.inf, s.T)
  logits = jnp.concatenate([s, off_diag_cols], axis=1)
  return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(s))


def nce_metrics(z_video, z_audio):
  """Mean positive/negative similarity and in-batch top-1 retrieval accuracy."""
  s = similarities(z_video, z_audio)
  b = s.shape[0]
  eye = jnp.eye(b, dtype=bool)
  labels = jnp.arange(b)
  return {
      "sim_positive": jnp.mean(jnp.diagonal(s)),
      "sim_negative": jnp.sum(jnp.where(eye, 0.0, s)) / max(b * (b - 1), 1),
      # v->a: the audio that video i scores highest; a->v: the video audio j scores highest.
      "top1_v2a": jnp.mean(jnp.argmax(s, axis=1) == labels),
      "top1_a2v": jnp.mean(jnp.argmax(s, axis=0) == labels),
  }
