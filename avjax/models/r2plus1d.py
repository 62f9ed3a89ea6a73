"""Video encoder f: R(2+1)D-18 (torchvision `r2plus1d_18` without classifier).

Every (1,k,k) spatial conv runs as a 2-D conv over the N*T frames and every
(3,1,1) temporal conv as a 2-D conv over (T, H*W): both are free reshapes of a
channels-last tensor, and 2-D convs are much better served by cuDNN/XLA than
3-D ones. Kernels keep a layout that maps 1:1 to torchvision's (see convert.py):

  spatial  (kh, kw, cin, cout)  <->  torch (cout, cin, 1, kh, kw)
  temporal (kt, 1, cin, cout)   <->  torch (cout, cin, kt, 1, 1)
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from avjax.models import layers
from avjax.models.layers import ModuleDef


def over_frames(layer, x):
  """Applies a 2-D `layer` to every frame of `x` (N, T, H, W, C)."""
  n, t = x.shape[:2]
  y = layer(x.reshape((n * t,) + x.shape[2:]))
  return y.reshape((n, t) + y.shape[1:])


def over_time(layer, x):
  """Applies a 2-D `layer` with a (k, 1) kernel to `x` (N, T, H, W, C) seen as (N, T, H*W, C)."""
  n, t, h, w, c = x.shape
  y = layer(x.reshape(n, t, h * w, c))
  return y.reshape(n, y.shape[1], h, w, y.shape[-1])


def midplanes(inplanes, planes):
  """Width of the (2+1)D bottleneck that matches a full 3x3x3 conv's parameters."""
  return (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)


class Conv2Plus1D(nn.Module):
  """(1,3,3) conv to `mid` channels, BN, ReLU, (3,1,1) conv to `features`."""
  mid: int
  features: int
  stride: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    s = self.stride
    x = over_frames(self.conv(self.mid, (3, 3), strides=(s, s),
                              padding=((1, 1), (1, 1)), name="spatial"), x)
    x = self.norm(name="bn")(x, relu=True)
    return over_time(self.conv(self.features, (3, 1), strides=(s, 1),
                               padding=((1, 1), (0, 0)), name="temporal"), x)


class BasicBlock(nn.Module):
  """torchvision VideoResNet BasicBlock with Conv2Plus1D convs."""
  planes: int
  stride: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    # torchvision computes midplanes once from (inplanes, planes) and uses it
    # for both convs of the block, although conv2's input is `planes` wide.
    mid = midplanes(x.shape[-1], self.planes)
    y = Conv2Plus1D(mid, self.planes, self.stride, self.conv, self.norm, name="conv1")(x)
    y = self.norm(name="bn1")(y, relu=True)
    y = Conv2Plus1D(mid, self.planes, 1, self.conv, self.norm, name="conv2")(y)
    if self.stride != 1 or x.shape[-1] != self.planes:
      # A 1x1x1 conv with stride s is a temporal subsampling followed by a
      # strided 1x1 conv over the remaining frames.
      s = self.stride
      x = over_frames(self.conv(self.planes, (1, 1), strides=(s, s),
                                padding=((0, 0), (0, 0)), name="downsample_conv"),
                      x[:, ::s])
      x = self.norm(name="downsample_bn")(x)
    # relu(bn2(y) + x) as one op: with norm="fused" its backward keeps no extra array.
    return self.norm(name="bn2")(y, x, relu=True)


class R2Plus1D(nn.Module):
  """R(2+1)D video encoder: (N, T, H, W, 3) -> final feature map (N, T', H', W', C).

  Attributes:
    stage_sizes: BasicBlocks per stage.
    stage_widths: output channels per stage; stride 2 (on T, H, W) from stage 2 on.
    stem_widths: channels after the stem's spatial and temporal convs.
    norm: BatchNorm implementation, "flax" or "fused" (layers.NORMS); same variables.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  stage_widths: Sequence[int] = (64, 128, 256, 512)
  stem_widths: Sequence[int] = (45, 64)
  norm: str = "flax"
  dtype: Any = jnp.bfloat16
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    conv, norm = layers.conv_and_norm(train=train, dtype=self.dtype,
                                      param_dtype=self.param_dtype, norm=self.norm)
    x = jnp.asarray(x, self.dtype)
    x = over_frames(conv(self.stem_widths[0], (7, 7), strides=(2, 2),
                         padding=((3, 3), (3, 3)), name="stem_spatial"), x)
    x = norm(name="stem_bn1")(x, relu=True)
    x = over_time(conv(self.stem_widths[1], (3, 1), padding=((1, 1), (0, 0)),
                       name="stem_temporal"), x)
    x = norm(name="stem_bn2")(x, relu=True)
    return layers.stages(x, BasicBlock, self.stage_sizes, self.stage_widths, conv, norm)


def r2plus1d_18(**overrides):
  """torchvision r2plus1d_18 without classifier: 31,300,125 parameters."""
  return R2Plus1D(**overrides)


def r2plus1d_tiny(**overrides):
  """A small (~64k-parameter) variant for tests."""
  kwargs = dict(stage_sizes=(1, 1, 1, 1), stage_widths=(8, 16, 16, 32), stem_widths=(4, 8))
  return R2Plus1D(**{**kwargs, **overrides})


VARIANTS = {"r2plus1d_18": r2plus1d_18, "r2plus1d_tiny": r2plus1d_tiny}
