"""The commands: absl flags and a main() each, run as `python -m avjax.<verb>`.

Each avjax/<verb>.py is an entry point that only runs avjax/cli/<verb>.py (`run`);
the commands read the run configs (configs/) and call into the library, which never
imports them. `python -m avjax.ingest` and `python -m avjax.synthetic` are their stages'
own __main__ modules.
"""

import sys

from absl import app
from absl import flags


def run(command):
  """Runs a command module's main() as the program: its docstring is the usage that --help
  prints, with its flags."""
  for flag in flags.FLAGS.get_key_flags_for_module(command):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)  # absl's name of __main__
  sys.modules["__main__"].__doc__ = command.__doc__
  app.run(command.main)
