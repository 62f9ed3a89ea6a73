r"""How identifiable titles and event classes are from a dataset's inputs alone.

  python -m avjax.inputs --dataset=DATASET_DIR [--short_side=32 --crop_size=32 \
      --num_frames=4 --hop=1024] [--output=inputs.json]

Prints, for simple statistics of the model's inputs (avjax.evals.inputs), title
identification among the held-out titles and the linear event probe; a reference for what
pretraining starts from and which shortcuts the data offers.
"""

from absl import app
from absl import flags

from avjax import fileio
from avjax.data import config as data_config
from avjax.evals import inputs

_D = data_config.default_config()
flags.DEFINE_string("dataset", None, "Dataset dir(s) written by ingest ('+'-joined).",
                    required=True)
flags.DEFINE_integer("short_side", _D.short_side, "As config.data.short_side.")
flags.DEFINE_integer("crop_size", _D.crop_size, "As config.data.crop_size.")
flags.DEFINE_integer("num_frames", _D.num_frames, "As config.data.num_frames.")
flags.DEFINE_integer("hop", _D.hop, "As config.data.hop (log-mel hop, samples).")
flags.DEFINE_string("labels", "", "labels.json (default: found next to the sources).")
flags.DEFINE_string("output", "", "Also write the numbers to this JSON file.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  config = data_config.default_config()
  config.dataset = f.dataset.split("+")
  for name in ("short_side", "crop_size", "num_frames", "hop"):
    config[name] = f[name].value
  # Imported here: TensorFlow (the eval input) loads only when it runs.
  from avjax.data import pipeline  # pylint: disable=g-import-not-at-top
  out = inputs.input_identifiability(pipeline.EvalData(config), labels=f.labels or None)
  print("\n".join(inputs.report_lines(out)))
  if f.output:
    fileio.write_json(f.output, out)
