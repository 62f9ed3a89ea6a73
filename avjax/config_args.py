"""The `--config=FILE.py:ARGS` of every command: the file, found, and its ARGS, typed.

`parse_arg("k=16,res=high,runlocal", k=1, res="low", runlocal=False)` returns a ConfigDict
with k=16 (int, from the default's type), res="high" and runlocal=True: a bare name sets a
boolean to True. Unknown names and values of the wrong type raise errors naming them.

`define_config_flag` defines the absl flag (with `--config.field=value` overrides, as
ml_collections' config flags). A FILE that does not exist as given is looked up among the
configs shipped in the package (`resolve`): `configs/pretrain.py` names
avjax/configs/pretrain.py from any folder, also after a non-editable `pip install`.
"""

import importlib.util
import os

import ml_collections
from absl import flags
from ml_collections import config_flags

SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


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


def resolve(path):
  """`path` if it exists, else the shipped config it names: .../configs/X.py is
  avjax/configs/X.py."""
  if os.path.exists(path):
    return path
  parts = os.path.normpath(path).split(os.sep)
  if "configs" in parts:
    rel = parts[len(parts) - parts[::-1].index("configs"):]
    shipped = os.path.join(SHIPPED, *rel)
    if rel and os.path.exists(shipped):
      return shipped
  raise FileNotFoundError(f"config file {path!r} not found (nor among the configs shipped "
                          f"in {SHIPPED})")


def load_config(spec):
  """`FILE.py[:ARGS]` -> get_config(ARGS) of that file (found by `resolve`)."""
  path, sep, arg = spec.partition(":")
  path = resolve(path)
  name = "avjax_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if sep else module.get_config()


class _ConfigFileParser(flags.ArgumentParser):
  """Parses `FILE.py:ARGS` into the (locked) ConfigDict of get_config(ARGS)."""

  def __init__(self, lock_config):
    self._lock_config = lock_config

  def parse(self, argument):
    if not isinstance(argument, str):
      return argument
    try:
      config = load_config(argument)
    except FileNotFoundError as e:
      raise ValueError(str(e)) from None  # absl reports it as a bad flag value
    if self._lock_config and hasattr(config, "lock"):
      config.lock()
    return config

  def flag_type(self):
    return "config file"


def define_config_flag(name, help_string, *, lock_config=True, flag_values=flags.FLAGS,
                       sys_argv=None):
  """An absl flag `--NAME=FILE.py:ARGS`, with `--NAME.field=value` overrides."""
  holder = config_flags.DEFINE_config_file(name, None, help_string, flag_values=flag_values,
                                            lock_config=lock_config, sys_argv=sys_argv)
  flag_values[name].parser = _ConfigFileParser(lock_config)
  return holder
