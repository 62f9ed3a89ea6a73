"""Equation 1: numpy reference, normalized ablation, stability, gradients, sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from avjax import losses
from avjax import sharding as sharding_lib


def reference_nce(zv, za):
  """Direct evaluation of the formula, element by element."""
  zv, za = np.float64(zv), np.float64(za)
  b = len(zv)
  total = 0.0
  for i in range(b):
    terms = [zv[i] @ za[i]]
    terms += [zv[i] @ za[j] for j in range(b) if j != i]
    terms += [zv[j] @ za[i] for j in range(b) if j != i]
    total += logsumexp(terms) - zv[i] @ za[i]
  return total / b


def random_pair(b=12, d=7, scale=1.0, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(b, d)).astype(np.float32) * scale,
          rng.normal(size=(b, d)).astype(np.float32) * scale)


def test_matches_numpy_reference():
  for seed, scale in [(0, 1.0), (1, 3.0), (2, 0.1)]:
    zv, za = random_pair(seed=seed, scale=scale)
    got = float(losses.nce_loss(zv, za))
    np.testing.assert_allclose(got, reference_nce(zv, za), rtol=1e-5)


def test_normalized_equals_symmetric_infonce_with_shared_negatives():
  zv, za = random_pair(b=9, d=5, scale=4.0, seed=3)
  tau = 0.07
  nv = zv / np.linalg.norm(zv, axis=1, keepdims=True)
  na = za / np.linalg.norm(za, axis=1, keepdims=True)
  s = (np.float64(nv) @ np.float64(na).T) / tau
  # InfoNCE over the union of the v->a row and the a->v column of each positive.
  expected = np.mean([
      logsumexp(np.concatenate([s[i], np.delete(s[:, i], i)])) - s[i, i] for i in range(len(s))
  ])
  got = float(losses.nce_loss(zv, za, normalize=True, temperature=tau))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Normalization makes the loss invariant to the embeddings' scale.
  np.testing.assert_allclose(
      float(losses.nce_loss(3 * zv, 5 * za, normalize=True, temperature=tau)), got, rtol=1e-5)


def test_finite_at_large_similarities():
  zv, za = random_pair(b=8, d=4, seed=4)
  zv = zv / np.linalg.norm(zv, axis=1, keepdims=True) * 100.0
  za = za / np.linalg.norm(za, axis=1, keepdims=True) * 100.0  # |s_ij| up to 1e4
  loss = losses.nce_loss(zv, za)
  assert np.isfinite(float(loss))
  np.testing.assert_allclose(float(loss), reference_nce(zv, za), rtol=1e-4)
  grads = jax.grad(lambda v, a: losses.nce_loss(v, a), argnums=(0, 1))(zv, za)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_bfloat16_inputs_are_computed_in_float32():
  zv, za = random_pair(b=6, d=8, seed=5)
  loss = losses.nce_loss(jnp.asarray(zv, jnp.bfloat16), jnp.asarray(za, jnp.bfloat16))
  assert loss.dtype == jnp.float32
  rounded = [np.asarray(jnp.asarray(z, jnp.bfloat16), np.float32) for z in (zv, za)]
  np.testing.assert_allclose(float(loss), reference_nce(*rounded), rtol=1e-5)


def test_gradient_matches_finite_differences():
  zv, za = random_pair(b=4, d=3, seed=6)
  zv, za = np.float64(zv), np.float64(za)
  with jax.enable_x64(True):
    grad_v, grad_a = jax.grad(lambda v, a: losses.nce_loss(v, a), argnums=(0, 1))(zv, za)
  eps = 1e-5
  for z, grad, which in [(zv, grad_v, 0), (za, grad_a, 1)]:
    numeric = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
      plus, minus = z.copy(), z.copy()
      plus[idx] += eps
      minus[idx] -= eps
      args_p = (plus, za) if which == 0 else (zv, plus)
      args_m = (minus, za) if which == 0 else (zv, minus)
      numeric[idx] = (reference_nce(*args_p) - reference_nce(*args_m)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(grad), numeric, rtol=1e-4, atol=1e-6)


def test_sharded_batch_equals_single_device():
  assert jax.device_count() == 8
  zv, za = random_pair(b=32, d=16, seed=7)
  mesh = sharding_lib.make_mesh()
  sharding = sharding_lib.batch_sharding(mesh)
  zv_s, za_s = jax.device_put(zv, sharding), jax.device_put(za, sharding)
  assert len(zv_s.addressable_shards) == 8
  loss_fn = jax.jit(losses.nce_loss, out_shardings=sharding_lib.replicated(mesh))
  sharded = float(loss_fn(zv_s, za_s))
  single = float(jax.jit(losses.nce_loss)(jax.device_put(zv, jax.devices()[0]),
                                          jax.device_put(za, jax.devices()[0])))
  np.testing.assert_allclose(sharded, single, rtol=1e-6)
  np.testing.assert_allclose(sharded, reference_nce(zv, za), rtol=1e-5)


def test_metrics():
  rng = np.random.default_rng(8)
  za = (np.eye(10) + 0.1 * rng.normal(size=(10, 10))).astype(np.float32)
  zv = za * 5.0  # every video's best audio is its own
  zv[3] = -zv[3]  # except video 3, which points away from its audio
  m = jax.tree.map(float, losses.nce_metrics(zv, za))
  np.testing.assert_allclose(m["top1_v2a"], 0.9, rtol=1e-6)
  s = zv @ za.T
  np.testing.assert_allclose(m["sim_positive"], np.mean(np.diag(s)), rtol=1e-5)
  np.testing.assert_allclose(m["sim_negative"], (s.sum() - np.trace(s)) / 90, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(m["top1_a2v"], np.mean(np.argmax(s, axis=0) == np.arange(10)), rtol=1e-6)


def test_video_and_audio_embeddings_must_pair_row_by_row():
  with pytest.raises(AssertionError):
    losses.nce_loss(jnp.zeros((4, 8)), jnp.zeros((3, 8)))
  with pytest.raises(AssertionError):
    losses.nce_loss(jnp.zeros((4, 8, 1)), jnp.zeros((4, 8, 1)))
