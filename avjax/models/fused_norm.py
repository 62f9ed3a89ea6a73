"""BatchNorm (+ residual add) (+ ReLU) with a memory-lean custom VJP, for the encoders.

Why: in the differentiated training step, Flax's `nn.BatchNorm` computes `x - mean` in
float32 and autodiff keeps that activation-sized float32 array (and `x` cast to float32)
for the backward pass: 0.95 of the 1.54 GiB of residuals per sample of the paper model in
the traced program (docs/benchmarks.md; XLA may still fuse such cheap intermediates into
their consumers instead of keeping them, which only the accelerator's peak memory shows),
and its backward pass is several passes over the activation. Here the forward pass keeps
only

  * its input `x` (the conv output, in the compute dtype, bf16 by default),
  * its output when a ReLU follows (the next conv keeps that same array for its kernel
    gradient anyway, so it costs nothing extra; its sign is the ReLU's mask),
  * per-channel float32 statistics (mean, 1/sqrt(var + eps)) and the scale,

and the backward pass recomputes x_hat = (x - mean) / sigma from them. A residual add
(`relu(bn(y) + x)` at the end of a BasicBlock) needs no saved array at all: its gradient
is the masked output cotangent.

Each direction is two passes over the activation, which XLA fuses: forward, one
reduction (sum x, sum x^2) and one elementwise pass (normalize, scale/shift, + residual,
ReLU, cast); backward, one reduction (sum g, sum g * x_hat, with g the masked cotangent)
and one elementwise pass (dx, and the residual's gradient).

Statistics are over every axis but the last (channels) of the array as the program sees
it: under `jax.jit` with the batch sharded over devices that is the GLOBAL batch (XLA
inserts the all-reduces), exactly as `nn.BatchNorm`, so 8 devices compute what 1 does.
The statistics use the same formula as `nn.BatchNorm` (float32, Var = E[x^2] - E[x]^2
clipped at 0), the running averages the same update (`momentum * running + (1 - momentum)
* batch`, biased variance) and the variables the same names and collections (params
`scale`/`bias`, batch_stats `mean`/`var`): the parameter tree is identical for both
norms, so exports, `avjax.models.convert` and old checkpoints load into either.

With `remat=convs` (models/remat.py: the backward pass keeps only conv outputs and
recomputes the rest), the two combine: the conv outputs are this layer's inputs `x`, the
per-channel statistics are tagged with `checkpoint_name(STATS_NAME)`, which that policy
also saves (a few floats per channel), so the backward pass recomputes the output (one
elementwise pass, no second reduction) and then runs the backward above. The saved
residuals are then the conv outputs alone, as with Flax's BatchNorm, and the recomputed
part is cheaper.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import dtypes
from jax import lax
from jax.ad_checkpoint import checkpoint_name

# Name of the per-channel statistics (mean, 1/sigma) in the forward pass; the "convs"
# remat policy (models/remat.py) saves values of this name.
STATS_NAME = "fused_norm_stats"


def batch_statistics(x):
  """Mean and biased variance over every axis but the last, in float32, as nn.BatchNorm."""
  axes = tuple(range(x.ndim - 1))
  xf = x.astype(jnp.float32)
  mean = jnp.mean(xf, axes)
  mean2 = jnp.mean(jnp.square(xf), axes)
  return mean, jnp.maximum(0.0, mean2 - jnp.square(mean))


def normalize(x, mean, mul, bias, residual, relu, dtype):
  """relu?((x - mean) * mul + bias (+ residual)) in float32, cast to `dtype`: one pass."""
  y = (x.astype(jnp.float32) - mean) * mul + bias
  if residual is not None:
    y = y + residual.astype(jnp.float32)
  if relu:
    y = jnp.maximum(y, 0.0)
  return y.astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def batch_norm_train(x, scale, bias, residual, relu, epsilon, dtype, residual_dtype):
  """Training-mode BatchNorm (+ residual) (+ ReLU): (out, batch mean, batch variance).

  Args:
    x: (..., C) input; statistics over every axis but the last.
    scale, bias: (C,) parameters.
    residual: None or an array of x's shape added after the affine transform.
    relu: apply a ReLU last.
    epsilon: added to the variance.
    dtype: dtype of `out`.
    residual_dtype: `residual.dtype` (None without a residual).

  The batch mean and variance are for the running averages: their cotangents are
  ignored, so callers pass them through `lax.stop_gradient`.
  """
  return _fwd(x, scale, bias, residual, relu, epsilon, dtype, residual_dtype)[0]


def _fwd(x, scale, bias, residual, relu, epsilon, dtype, residual_dtype):
  del residual_dtype
  mean, var = batch_statistics(x)
  inv = lax.rsqrt(var + epsilon)
  mean, inv = checkpoint_name((mean, inv), STATS_NAME)
  out = normalize(x, mean, inv * scale, bias, residual, relu, dtype)
  # What the backward pass keeps: x, the output only where it carries the ReLU mask,
  # per-channel vectors. No activation-sized float32 array.
  saved = (x, out if relu else None, scale, mean, inv)
  return (out, mean, var), saved


def _bwd(relu, epsilon, dtype, residual_dtype, saved, cotangents):
  del epsilon, dtype
  x, out, scale, mean, inv = saved
  g = cotangents[0].astype(jnp.float32)  # mean/var cotangents: see the docstring.
  if relu:
    g = jnp.where(out > 0, g, 0.0)
  axes = tuple(range(x.ndim - 1))
  m = x.size // x.shape[-1]
  x_hat = (x.astype(jnp.float32) - mean) * inv
  d_bias = jnp.sum(g, axes)
  d_scale = jnp.sum(g * x_hat, axes)
  # d/dx of scale * x_hat + bias through the batch mean and variance.
  dx = (scale * inv) * (g - (d_bias + x_hat * d_scale) / m)
  d_residual = None if residual_dtype is None else g.astype(residual_dtype)
  return (dx.astype(x.dtype), d_scale.astype(scale.dtype), d_bias.astype(scale.dtype),
          d_residual)


batch_norm_train.defvjp(_fwd, _bwd)


class FusedBatchNorm(nn.Module):
  """`nn.BatchNorm` over the last axis with an optional residual add and ReLU fused in.

  `FusedBatchNorm(...)(x, residual, relu=True)` computes what
  `nn.relu(nn.BatchNorm(...)(x) + residual)` does (within rounding: one cast to `dtype`
  at the end instead of one per op) with the same variables; in training it keeps only
  what the module docstring lists for the backward pass.

  Attributes: as nn.BatchNorm's (axis is always -1, scale and bias always used).
  """
  use_running_average: bool | None = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, residual=None, *, relu=False, use_running_average=None):
    use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                         use_running_average)
    features = (x.shape[-1],)
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32),
                            features)
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
    scale = self.param("scale", nn.initializers.ones, features, self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, features, self.param_dtype)
    dtype = dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype)
    if residual is not None and residual.shape != x.shape:
      raise ValueError(f"{self.name}: residual shape {residual.shape} != input shape "
                       f"{x.shape}")

    if use_running_average:
      mul = lax.rsqrt(ra_var.value + self.epsilon) * scale
      return normalize(x, ra_mean.value, mul, bias, residual, relu, dtype)

    out, mean, var = batch_norm_train(
        x, scale, bias, residual, bool(relu), float(self.epsilon), jnp.dtype(dtype),
        None if residual is None else jnp.dtype(residual.dtype))
    if not self.is_initializing():
      # nn.BatchNorm's update of the running averages (biased variance).
      for ra, batch in ((ra_mean, mean), (ra_var, var)):
        ra.value = self.momentum * ra.value + (1 - self.momentum) * lax.stop_gradient(batch)
    return out
