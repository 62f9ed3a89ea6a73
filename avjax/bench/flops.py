"""FLOP counts of a Flax model: analytic (layer by layer) and from a traced jaxpr.

Counting rule (the convention of PyTorch's FLOP counter and fvcore, 2 FLOPs per MAC):
  * conv: MACs = output elements x kernel window x input channels / feature groups
    (padding is not discounted: every output sees the full window);
  * dense: MACs = input rows x in_features x out_features;
  * forward FLOPs = 2 x MACs; BatchNorm, ReLU, pooling, residual adds, the loss's
    elementwise work and the optimizer update are not counted (a few % of the memory
    traffic, ~0 of the FLOPs);
  * training (forward + backward) = 3 x forward: the backward of each conv and dense
    layer is one input-gradient and one weight-gradient product, each as large as the
    forward one.

`layers` walks the model itself: it runs `module.init` under `jax.eval_shape` (nothing
is computed or allocated) with an interceptor that records every `nn.Conv` and
`nn.Dense`/`nn.DenseGeneral` call's input and output shapes and kernel size.

`jaxpr_flops` counts what a traced function (e.g. the jitted update step) actually
multiplies, by the same rule applied to each `conv_general_dilated` and `dot_general`
of its jaxpr after autodiff. It differs from 3 x forward where autodiff skips work:
no input gradient is formed for a layer whose input is data (the stems), exactly as
PyTorch's counter sees a backward pass. Input-gradient convs of strided layers are
counted without the zeros that the transposed stride inserts.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Layer:
  """One conv or dense call: where, what shapes, how many multiply-accumulates."""
  path: str
  kind: str
  in_shape: tuple
  out_shape: tuple
  kernel: tuple
  macs: int


def _module_path(module):
  scope = getattr(module, "scope", None)
  path = getattr(scope, "path", None) or ()
  return "/".join(str(p) for p in path) or type(module).__name__


def _as_struct(x):
  if isinstance(x, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in x):
    return jax.ShapeDtypeStruct(tuple(x), np.float32)
  return x


def layers(module, *args, rng=None, **kwargs):
  """Every conv/dense layer that `module.init(rng, *args, **kwargs)` calls, in order.

  Args:
    module: a Flax linen module.
    *args: its inputs: arrays, `jax.ShapeDtypeStruct`s, or shape tuples (float32).
    rng: init key (default key(0)); nothing is computed with it.
    **kwargs: keyword arguments of the call, e.g. `train=False`.
  Returns:
    A list of `Layer`.
  """
  found = []

  def interceptor(next_fun, call_args, call_kwargs, context):
    out = next_fun(*call_args, **call_kwargs)
    m = context.module
    if context.method_name != "__call__" or not call_args:
      return out
    x = call_args[0]
    if isinstance(m, nn.Conv):  # channels last
      kind, kernel = "conv", tuple(m.kernel_size)
      macs = math.prod(out.shape) * math.prod(kernel) * x.shape[-1] // m.feature_group_count
    elif isinstance(m, nn.Dense):
      kind, kernel = "dense", ()
      macs = math.prod(x.shape[:-1]) * x.shape[-1] * out.shape[-1]
    elif isinstance(m, nn.DenseGeneral):
      k_out = math.prod((m.features,) if isinstance(m.features, int) else m.features)
      kind, kernel = "dense", ()
      macs = math.prod(x.shape) * k_out  # each input element meets every output feature
    else:
      return out
    found.append(Layer(_module_path(m), kind, tuple(x.shape), tuple(out.shape), kernel, macs))
    return out

  rng = jax.random.key(0) if rng is None else rng
  args = tuple(_as_struct(a) for a in args)
  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda r, *a: module.init(r, *a, **kwargs), rng, *args)
  return found


def forward_flops(found):
  """2 x MACs over `found` (a list of `Layer`)."""
  return 2 * sum(l.macs for l in found)


def train_flops(found):
  """Forward + backward by the 3 x forward rule."""
  return 3 * forward_flops(found)


# ---------------------------------------------------------------------------
# From a jaxpr (what the traced, differentiated step multiplies).


def _conv_eqn_macs(eqn):
  rhs, out = eqn.invars[1].aval, eqn.outvars[0].aval
  # rhs_spec = (out_feature_dim, in_feature_dim, *spatial_dims).
  rhs_spec = eqn.params["dimension_numbers"].rhs_spec
  window = math.prod(rhs.shape[d] for d in rhs_spec[2:])
  in_features = rhs.shape[rhs_spec[1]]
  macs = math.prod(out.shape) * window * in_features
  # An input-gradient conv of a strided layer dilates its input with zeros; the
  # products with those zeros are not work (cuDNN and PyTorch's counter skip them).
  lhs_dilation = eqn.params.get("lhs_dilation") or ()
  return macs // max(1, math.prod(lhs_dilation))


def _dot_eqn_macs(eqn):
  lhs = eqn.invars[0].aval
  out = eqn.outvars[0].aval
  (contract_lhs, _), _ = eqn.params["dimension_numbers"]
  return math.prod(out.shape) * math.prod(lhs.shape[d] for d in contract_lhs)


def _sub_jaxprs(value):
  """Jaxprs held in an equation parameter (pjit, remat, custom_vjp, cond branches...)."""
  if hasattr(value, "eqns"):
    yield value
  elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def jaxpr_macs(jaxpr):
  """Conv + dot MACs of a (closed) jaxpr, recursing into sub-jaxprs (scan x length)."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      total += _conv_eqn_macs(eqn)
    elif name == "dot_general":
      total += _dot_eqn_macs(eqn)
    else:
      times = eqn.params.get("length", 1) if name == "scan" else 1
      for key, value in eqn.params.items():
        if key in ("jvp_jaxpr_fun", "jvp_jaxpr_thunk", "fwd_jaxpr_thunk", "bwd"):
          continue
        if name == "cond" and key == "branches":
          total += max((jaxpr_macs(b) for b in _sub_jaxprs(value)), default=0)
          continue
        for sub in _sub_jaxprs(value):
          total += times * jaxpr_macs(sub)
  return total


def jaxpr_flops(jaxpr):
  """2 x the conv + dot MACs of a jaxpr (e.g. `jax.jit(f).trace(*args).jaxpr`)."""
  return 2 * jaxpr_macs(jaxpr)
