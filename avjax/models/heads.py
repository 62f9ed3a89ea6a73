"""Projection heads h_f, h_g: feature map -> embedding (paper Section 3 and 7.2)."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from avjax.models.layers import conv_init


def global_average_pool(x):
  """Mean over every axis but the first (batch) and last (channels), in float32."""
  return jnp.mean(x.astype(jnp.float32), axis=tuple(range(1, x.ndim - 1)))


class ProjectionHead(nn.Module):
  """Two convs separated by BN and ReLU, then global average pooling (Section 3).

  Works on video maps (N, T, H, W, C) and audio maps (N, F, T, C): the kernel
  spans every axis between batch and channels. Section 7.2 uses kernel size 1.

  Attributes:
    dim: embedding dimension d.
    hidden: channels of the first conv; None keeps the input's channels.
    kernel_size: kernel extent along every spatial/temporal axis.
    dtype: compute dtype of the first conv and BN.
    param_dtype: parameter dtype.
  """
  dim: int = 512
  hidden: int | None = None
  kernel_size: int = 1
  dtype: Any = jnp.bfloat16
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    kernel = (self.kernel_size,) * (x.ndim - 2)
    hidden = self.hidden or x.shape[-1]
    x = nn.Conv(hidden, kernel, padding="SAME", use_bias=False, kernel_init=conv_init,
                dtype=self.dtype, param_dtype=self.param_dtype, name="conv1")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, param_dtype=self.param_dtype, name="bn")(x)
    x = nn.relu(x)
    # The embedding enters the unnormalized NCE loss (Eq. 1) as is, where bf16
    # rounding would show in the logits; the final feature map is small, so
    # float32 costs little here.
    x = nn.Conv(self.dim, kernel, padding="SAME", use_bias=True,
                dtype=jnp.float32, param_dtype=self.param_dtype, name="conv2")(x)
    return global_average_pool(x)
