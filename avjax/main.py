r"""Pretraining entry point.

  python -m avjax.main --config=configs/pretrain.py:dataset=data/movie,k=16 --workdir=runs/k16

Restarting the same command in the same workdir resumes from the latest checkpoint.
"""

import os

from absl import app
from absl import flags
from absl import logging

from avjax import config_args
from avjax import sharding

flags.DEFINE_string("workdir", None, "Checkpoints, logs, config.json and the export.")
config_args.define_config_flag("config", "Pretraining config, e.g. configs/pretrain.py:ARGS.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  # Before any other JAX call: join the other processes of a multi-host launch.
  sharding.maybe_initialize_distributed()
  # Imported here, not at the top: TensorFlow (the input pipeline) loads only when a run
  # starts, so --help stays fast.
  from avjax import pretrain  # pylint: disable=g-import-not-at-top
  logging.info("workdir %s", os.path.abspath(FLAGS.workdir))
  pretrain.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
