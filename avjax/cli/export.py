r"""Exports the backbones f and g of a pretraining run for downstream evaluation.

  python -m avjax.export --workdir=runs/k16 --output=exports/k16 [--step=N]

Writes an Orbax checkpoint of f ("video_encoder") and g ("audio_encoder") with their
BatchNorm statistics, and model_config.json; the projection heads are dropped (paper
Section 3). Training runs this itself at the end, into WORKDIR/export. The export is
written beside OUTPUT and renamed into place (a killed export leaves the previous one
whole); one export at a time writes into OUTPUT. A folder that is not a pretraining run,
or a step it does not have, ends the command with one line and exit status 1.
"""

import os
import sys

from absl import app
from absl import flags

from avjax import checkpoint
from avjax import console
from avjax import dirlock
from avjax import sharding

flags.DEFINE_string("workdir", None, "A pretraining workdir (holds config.json and checkpoints).")
flags.DEFINE_string("output", None, "Export directory.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.mark_flags_as_required(["workdir", "output"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  console.setup(FLAGS.workdir if os.path.isdir(FLAGS.workdir) else None)
  sharding.maybe_initialize_distributed()
  try:
    step = checkpoint.export_workdir(FLAGS.workdir, FLAGS.output, FLAGS.step)
  except (checkpoint.ExportError, checkpoint.DamagedCheckpointError, dirlock.LockedError,
          FileNotFoundError) as e:
    sys.exit(f"avjax.export: {e}")
  console.done(f"exported f and g of step {step} of {FLAGS.workdir}",
               export=os.path.abspath(FLAGS.output))
