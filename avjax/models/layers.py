"""What f and g share: torchvision-matching conv/BatchNorm settings and the stage loop."""

import functools
from typing import Callable

import flax.linen as nn

from avjax.models import fused_norm

ModuleDef = Callable[..., nn.Module]

# torchvision initialises convs with kaiming_normal_(mode="fan_out", relu).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BatchNorm(nn.BatchNorm):
  """`nn.BatchNorm` called as `norm(x, residual=None, relu=False)`, like FusedBatchNorm.

  Computes `relu(BatchNorm(x) + residual)` op by op (what the encoders always did), so
  the blocks read the same with either norm; the variables are nn.BatchNorm's own.
  """

  def __call__(self, x, residual=None, *, relu=False, use_running_average=None):
    y = super().__call__(x, use_running_average=use_running_average)
    if residual is not None:
      y = y + residual
    return nn.relu(y) if relu else y


# config.model.norm: the encoders' BatchNorm. Both have the same variables (params
# scale/bias, batch_stats mean/var), so a checkpoint of one loads into the other.
NORMS = {"flax": BatchNorm, "fused": fused_norm.FusedBatchNorm}


def conv_and_norm(*, train, dtype, param_dtype, norm="flax"):
  """(conv, norm) module factories with torchvision's conventions.

  `norm(name=...)` makes a module called as `(x, residual=None, relu=False)` that
  returns `relu?(BatchNorm(x) + residual)`; `norm` picks the implementation (NORMS).
  """
  if norm not in NORMS:
    raise ValueError(f"model.norm={norm!r}: expected one of {sorted(NORMS)}")
  conv = functools.partial(nn.Conv, use_bias=False, kernel_init=conv_init, dtype=dtype,
                           param_dtype=param_dtype)
  # torch momentum 0.1 (weight of the new batch) is flax momentum 0.9.
  norm = functools.partial(NORMS[norm], use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, dtype=dtype, param_dtype=param_dtype)
  return conv, norm


def stages(x, block, stage_sizes, stage_widths, conv, norm):
  """ResNet stages: stride 2 in the first block of every stage after the first."""
  for i, (size, width) in enumerate(zip(stage_sizes, stage_widths)):
    for j in range(size):
      stride = 2 if i > 0 and j == 0 else 1
      x = block(width, stride, conv, norm, name=f"layer{i + 1}_{j}")(x)
  return x
