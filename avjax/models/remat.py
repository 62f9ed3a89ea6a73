"""What the backward pass keeps of the forward pass (config.model.remat).

"none": everything autodiff saves. "convs": only the conv outputs; BatchNorm and ReLU,
cheap elementwise work, are recomputed. For the paper model the saved residuals drop
from 1.62 to 0.24 GiB per sample (Flax's BatchNorm keeps float32 intermediates), so
larger per-device batches fit.
"""

import jax


def _save_conv_outputs(prim, *_, **__):
  return prim.name == "conv_general_dilated"


POLICIES = {"none": None, "convs": _save_conv_outputs}


def apply(fn, remat):
  """`fn` wrapped in jax.checkpoint with the policy named `remat` (unchanged for "none")."""
  if remat not in POLICIES:
    raise ValueError(f"model.remat={remat!r}: expected one of {sorted(POLICIES)}")
  if POLICIES[remat] is None:
    return fn
  return jax.checkpoint(fn, policy=POLICIES[remat])
