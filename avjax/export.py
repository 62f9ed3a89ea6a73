r"""Exports the backbones f and g of a pretraining run for downstream evaluation.

  python -m avjax.export --workdir=runs/k16 --output=exports/k16 [--step=N]

Writes an Orbax checkpoint of f ("video_encoder") and g ("audio_encoder") with their
BatchNorm statistics, and model_config.json; the projection heads are dropped (paper
Section 3). Training runs this itself at the end, into WORKDIR/export.
"""

import os

import ml_collections
from absl import app
from absl import flags

from avjax import checkpoint
from avjax import fileio

flags.DEFINE_string("workdir", None, "A pretraining workdir (holds config.json and checkpoints).")
flags.DEFINE_string("output", None, "Export directory.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
flags.mark_flags_as_required(["workdir", "output"])
FLAGS = flags.FLAGS


def export(workdir, output, step=None):
  """Restores a training checkpoint of `workdir` and writes its backbones to `output`."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path}: not a pretraining workdir (no config.json)")
  config = ml_collections.ConfigDict(fileio.read_json(config_path))
  ckpt = checkpoint.Checkpointer(workdir, every_steps=1)
  step = ckpt.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"{workdir}: no checkpoints to export")
  # Restore the saved tree as it is; only the backbones are needed.
  state, _ = ckpt.restore(None, step=step)
  ckpt.close()
  variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
  checkpoint.export_backbones(output, variables, config.model)
  return step


def main(argv):
  del argv
  step = export(FLAGS.workdir, FLAGS.output, FLAGS.step)
  print(f"exported step {step} of {FLAGS.workdir} to {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
