"""Parses the `ARGS` of `--config=configs/X.py:ARGS` into typed fields.

`parse_arg("k=16,res=high,runlocal", k=1, res="low", runlocal=False)` returns a ConfigDict
with k=16 (int, from the default's type), res="high" and runlocal=True: a bare name sets a
boolean to True. Unknown names and values of the wrong type raise errors naming them.
"""

import ml_collections


def _convert(name, value, default):
  if isinstance(default, bool):
    if value.lower() in ("1", "true", "yes", "on", ""):
      return True
    if value.lower() in ("0", "false", "no", "off"):
      return False
    raise ValueError(f"config arg {name}={value!r}: expected a boolean")
  try:
    return type(default)(value)
  except ValueError:
    raise ValueError(f"config arg {name}={value!r}: expected {type(default).__name__}") from None


def parse_arg(arg, **defaults):
  """`"a=1,b=x,flag"` -> ConfigDict over `defaults`, typed like the defaults."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (s.strip() for s in (arg or "").split(","))):
    name, _, value = item.partition("=")
    if name not in defaults:
      raise ValueError(f"unknown config arg {name!r}; known: {', '.join(sorted(defaults))}")
    out[name] = _convert(name, value if "=" in item else "true", defaults[name])
  return out
