"""Audio encoder g: 2-D ResNet-18 on log-mel spectrograms (torchvision layout, 1-channel stem).

Kernels are (kh, kw, cin, cout), torchvision's (cout, cin, kh, kw) transposed.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from avjax.models import layers
from avjax.models.layers import ModuleDef


class BasicBlock(nn.Module):
  """torchvision ResNet BasicBlock: two 3x3 convs and a 1x1 projection shortcut when needed."""
  planes: int
  stride: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    s = self.stride
    y = self.conv(self.planes, (3, 3), strides=(s, s), padding=((1, 1), (1, 1)),
                  name="conv1")(x)
    y = self.norm(name="bn1")(y, relu=True)
    y = self.conv(self.planes, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(y)
    if s != 1 or x.shape[-1] != self.planes:
      x = self.conv(self.planes, (1, 1), strides=(s, s), padding=((0, 0), (0, 0)),
                    name="downsample_conv")(x)
      x = self.norm(name="downsample_bn")(x)
    # relu(bn2(y) + x) as one op: with norm="fused" its backward keeps no extra array.
    return self.norm(name="bn2")(y, x, relu=True)


class ResNet(nn.Module):
  """2-D ResNet: (N, mel_bins, frames, C_in) -> final feature map (N, F', T', C).

  Attributes:
    stage_sizes: BasicBlocks per stage.
    stage_widths: output channels per stage; stride 2 from stage 2 on.
    stem_width: channels of the 7x7 stride-2 stem conv.
    norm: BatchNorm implementation, "flax" or "fused" (layers.NORMS); same variables.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  stage_widths: Sequence[int] = (64, 128, 256, 512)
  stem_width: int = 64
  norm: str = "flax"
  dtype: Any = jnp.bfloat16
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    conv, norm = layers.conv_and_norm(train=train, dtype=self.dtype,
                                      param_dtype=self.param_dtype, norm=self.norm)
    x = jnp.asarray(x, self.dtype)
    x = conv(self.stem_width, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)),
             name="conv1")(x)
    x = norm(name="bn1")(x, relu=True)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    return layers.stages(x, BasicBlock, self.stage_sizes, self.stage_widths, conv, norm)


def resnet18_audio(**overrides):
  """torchvision resnet18 with a 1-channel stem, no classifier: 11,170,240 parameters."""
  return ResNet(**overrides)


def resnet_audio_tiny(**overrides):
  """A small (~25k-parameter) variant for tests."""
  kwargs = dict(stage_sizes=(1, 1, 1, 1), stage_widths=(8, 16, 16, 32), stem_width=8)
  return ResNet(**{**kwargs, **overrides})


VARIANTS = {"resnet18_audio": resnet18_audio, "resnet_audio_tiny": resnet_audio_tiny}
