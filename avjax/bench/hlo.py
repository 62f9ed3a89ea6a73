"""Collective ops in compiled (optimized) HLO text: which, how many, how many bytes."""

import re

import numpy as np

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "bf16": 2,
                "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4, "f64": 8,
                "s64": 8, "u64": 8, "c64": 8, "c128": 16}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all",
               "collective-permute")


def _shapes(type_text):
  """[(dtype, dims)] of every array type in an HLO result type, e.g. '(f32[2,3]{1,0}, ...)'."""
  return [(dtype, tuple(int(d) for d in dims.split(",") if d))
          for dtype, dims in re.findall(r"\b([a-z]+\d*[a-z0-9]*)\[([\d,]*)\]", type_text)
          if dtype in _DTYPE_BYTES]


def collectives(hlo_text):
  """Collective ops of an optimized HLO module: [dict(op, shapes, bytes)].

  Async pairs count once (their `-start`); an all-gather-start's result lists its
  operands before its outputs, so only the outputs' bytes count.
  """
  ops = "|".join(COLLECTIVES)
  pattern = re.compile(rf"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s+({ops})(-start)?\(", re.M)
  found = []
  for result_type, op, start in pattern.findall(hlo_text):
    shapes = _shapes(result_type)
    if start and op in ("all-gather", "collective-permute", "all-to-all") and len(shapes) > 1:
      shapes = shapes[len(shapes) // 2:]
    nbytes = sum(_DTYPE_BYTES[d] * int(np.prod(s, dtype=np.int64)) for d, s in shapes)
    found.append(dict(op=op, shapes=shapes, bytes=nbytes))
  return found


def collective_summary(hlo_text):
  """{op: (count, total bytes)} over the collectives of `hlo_text`."""
  out = {}
  for c in collectives(hlo_text):
    n, b = out.get(c["op"], (0, 0))
    out[c["op"]] = (n + 1, b + c["bytes"])
  return out
