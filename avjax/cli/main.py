r"""Pretraining entry point.

  python -m avjax.main --config=configs/pretrain.py:dataset=data/movie,k=16 --workdir=runs/k16

Restarting the same command in the same workdir resumes from the latest checkpoint (a
changed config is refused unless --config.resume=allow_changes). A bad config, a refused
restart or unreadable data end the command with a message and exit status 1; after
SIGTERM the command saves a checkpoint and exits 0 at once.
"""

import os
import sys

from absl import app
from absl import flags

from avjax import config_args
from avjax import console
from avjax import sharding

flags.DEFINE_string("workdir", None, "Checkpoints, logs, config.json and the export.")
config_args.define_config_flag("config", "Pretraining config, e.g. configs/pretrain.py:ARGS.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  console.setup()  # the log file opens in WORKDIR once the config and data are checked
  # Before any other JAX call: join the other processes of a multi-host launch.
  sharding.maybe_initialize_distributed()
  # Imported here, not at the top: TensorFlow (the input pipeline) loads only when a run
  # starts, so --help stays fast.
  with console.native_output_to_log():
    from avjax.pretrain import task  # pylint: disable=g-import-not-at-top
  from avjax import loop  # pylint: disable=g-import-not-at-top
  try:
    state = task.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except loop.STOPPING_ERRORS as e:
    sys.exit(f"avjax.main: {e}")
  workdir = os.path.abspath(FLAGS.workdir)
  if state is None:
    console.done("stopped before the end of the schedule; the same command resumes",
                 checkpoints=os.path.join(workdir, "checkpoints"))
    loop.exit_promptly(0)  # after a preemption: no slow teardown (grace periods)
  else:
    console.done(f"pretrained {int(state['step'])} steps", export=os.path.join(workdir, "export"),
                 tensorboard=f"tensorboard --logdir {workdir}")

