r"""Pretraining entry point.

  python -m avjax.main --config=configs/pretrain.py:dataset=data/movie,k=16 --workdir=runs/k16

Restarting the same command in the same workdir resumes from the latest checkpoint (a
changed config is refused unless --config.resume=allow_changes). A bad config, a refused
restart or unreadable data end the command with a message and exit status 1; after
SIGTERM the command saves a checkpoint and exits 0 at once.
"""

import os

from absl import app
from absl import flags

from avjax import config_args
from avjax import console
from avjax.cli import training

flags.DEFINE_string("workdir", None, "Checkpoints, logs, config.json and the export.")
config_args.define_config_flag("config", "Pretraining config, e.g. configs/pretrain.py:ARGS.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  _, state = training.train("main", FLAGS.config, FLAGS.workdir)
  workdir = os.path.abspath(FLAGS.workdir)
  console.done(f"pretrained {int(state['step'])} steps", export=os.path.join(workdir, "export"),
               tensorboard=f"tensorboard --logdir {workdir}")
