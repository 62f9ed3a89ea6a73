r"""Downstream evaluation: fine-tuning or linear probing of f (video) or g (audio).

  python -m avjax.finetune --config=configs/downstream/ucf101.py:data=data/ucf101_prep \
      --config.init=runs/k16/export --workdir=runs/k16/ucf101_split1 \
      [--config.split=1] [--config.mode=finetune|linear]

The protocol is the paper's (Sections 4.1 and 7.2; avjax.downstream.config). Restarting
the same command in the same workdir resumes from the latest checkpoint; the results
(top-1 over 30 or 10 views per clip) go to WORKDIR/results.json.
"""

import os

from absl import app
from absl import flags

from avjax import config_args
from avjax import console
from avjax.cli import training

flags.DEFINE_string("workdir", None, "Checkpoints, logs, config.json and results.json.")
config_args.define_config_flag("config",
                               "Downstream config, e.g. configs/downstream/ucf101.py:ARGS.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  task, results = training.train("finetune", FLAGS.config, FLAGS.workdir)
  console.done(f"{results['dataset']} split {results['split']} ({results['mode']}): test "
               f"top-1 {results['top1']:.4f} over {results['num_test']} clips "
               f"({results['views_per_clip']} views each; one view {results['view_top1']:.4f})",
               results=os.path.join(os.path.abspath(FLAGS.workdir), task.RESULTS))
