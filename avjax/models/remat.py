"""What the backward pass keeps of the forward pass (config.model.remat).

"none": everything autodiff saves. "convs": only the conv outputs; BatchNorm and ReLU,
cheap elementwise work, are recomputed. For the paper model the saved residuals drop
from 1.62 to 0.24 GiB per sample (Flax's BatchNorm keeps float32 intermediates), so
larger per-device batches fit. models/fused_norm.py says how "convs" combines with
model.norm="fused".
"""

import jax

from avjax.models import fused_norm


def _save_conv_outputs(prim, *_, **params):
  # Also the per-channel statistics of model.norm="fused" (a few floats per channel), so
  # its backward pass recomputes only the normalization, not the statistics' reduction.
  return prim.name == "conv_general_dilated" or (
      prim.name == "name" and params.get("name") == fused_norm.STATS_NAME)


POLICIES = {"none": None, "convs": _save_conv_outputs}


def apply(fn, remat):
  """`fn` wrapped in jax.checkpoint with the policy named `remat` (unchanged for "none")."""
  if remat not in POLICIES:
    raise ValueError(f"model.remat={remat!r}: expected one of {sorted(POLICIES)}")
  return fn if POLICIES[remat] is None else jax.checkpoint(fn, policy=POLICIES[remat])
