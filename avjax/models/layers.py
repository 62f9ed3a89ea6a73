"""What f and g share: torchvision-matching conv/BatchNorm settings and the stage loop."""

import functools
from typing import Callable

import flax.linen as nn

ModuleDef = Callable[..., nn.Module]

# torchvision initialises convs with kaiming_normal_(mode="fan_out", relu).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv_and_norm(*, train, dtype, param_dtype):
  """(conv, norm) module factories with torchvision's conventions."""
  conv = functools.partial(nn.Conv, use_bias=False, kernel_init=conv_init, dtype=dtype,
                           param_dtype=param_dtype)
  # torch momentum 0.1 (weight of the new batch) is flax momentum 0.9.
  norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, dtype=dtype, param_dtype=param_dtype)
  return conv, norm


def stages(x, block, stage_sizes, stage_widths, conv, norm):
  """ResNet stages: stride 2 in the first block of every stage after the first."""
  for i, (size, width) in enumerate(zip(stage_sizes, stage_widths)):
    for j in range(size):
      stride = 2 if i > 0 and j == 0 else 1
      x = block(width, stride, conv, norm, name=f"layer{i + 1}_{j}")(x)
  return x
