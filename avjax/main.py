r"""Pretraining entry point.

  python -m avjax.main --config=configs/pretrain.py:dataset=data/movie,k=16 --workdir=runs/k16

Restarting the same command in the same workdir resumes from the latest checkpoint.
"""

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

flags.DEFINE_string("workdir", None, "Checkpoints, logs, config.json and the export.")
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  # Before any other JAX call: join the other processes of a multi-host launch.
  from avjax import sharding  # pylint: disable=g-import-not-at-top
  sharding.maybe_initialize_distributed()
  from avjax.data import hide_gpus_from_tensorflow  # pylint: disable=g-import-not-at-top
  hide_gpus_from_tensorflow()
  from avjax import train  # pylint: disable=g-import-not-at-top
  logging.info("workdir %s", os.path.abspath(FLAGS.workdir))
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
