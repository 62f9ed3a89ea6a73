"""The commands: absl flags and a main() each; avjax/<verb>.py runs one (`run`) as
`python -m avjax.<verb>`. They read the run configs (configs/), which the library never
imports. `python -m avjax.ingest` and `python -m avjax.synthetic` are their stages' own."""

import sys

from absl import app
from absl import flags


def run(command):
  """Runs a command's main() as the program, with its docstring and flags on --help."""
  for flag in flags.FLAGS.get_key_flags_for_module(command):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)  # absl's name of __main__
  sys.modules["__main__"].__doc__ = command.__doc__
  app.run(command.main)
