r"""Downstream evaluation: fine-tuning or linear probing of f (video) or g (audio).

  python -m avjax.finetune --config=configs/downstream/ucf101.py:data=data/ucf101_prep \
      --config.init=runs/k16/export --workdir=runs/k16/ucf101_split1 \
      [--config.split=1] [--config.mode=finetune|linear]

The protocol is the paper's (Sections 4.1 and 7.2; avjax.downstream.config). Restarting
the same command in the same workdir resumes from the latest checkpoint; the results
(top-1 over 30 or 10 views per clip) go to WORKDIR/results.json.
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from avjax import config_args
from avjax import sharding

flags.DEFINE_string("workdir", None, "Checkpoints, logs, config.json and results.json.")
config_args.define_config_flag("config",
                               "Downstream config, e.g. configs/downstream/ucf101.py:ARGS.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  # Before any other JAX call: join the other processes of a multi-host launch.
  sharding.maybe_initialize_distributed()
  # Imported here, not at the top: TensorFlow loads only when the command runs.
  # pylint: disable=g-import-not-at-top
  from avjax import loop
  from avjax.downstream import task
  logging.info("workdir %s", os.path.abspath(FLAGS.workdir))
  try:
    results = task.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except loop.STOPPING_ERRORS as e:
    sys.exit(f"avjax.finetune: {e}")
  if results is None:  # preempted: the checkpoint is saved
    loop.exit_promptly(0)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
