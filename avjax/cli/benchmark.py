r"""Benchmarks: `python -m avjax.benchmark {ingest,input,step} [flags]`.

  python -m avjax.benchmark ingest [--minutes=2]               # ingest speed, x real time per core
  python -m avjax.benchmark ingest_beam [--titles=4]            # Beam's DirectRunner vs local path
  python -m avjax.benchmark input --dataset=DIR                 # snippets/s per core, peak host memory
  python -m avjax.benchmark step --config=configs/pretrain.py:ARGS --batch=64   # update-step speed
  python -m avjax.benchmark step --memory       # residual GiB per sample, norm x remat
  python -m avjax.benchmark scenes --synthetic=DIR --dataset=DIR   # shot/scene detection P/R

Each prints its figures; `--record` also writes them into docs/benchmarks.md under the
benchmark's own heading, with the machine named. Each subcommand is imported only when
it runs, so `step` never imports TensorFlow and runs on a host with only JAX installed.
"""

import sys

from absl import app
from absl import flags

from avjax import config_args
from avjax import console
from avjax.bench import report

SUBCOMMANDS = ("ingest", "ingest_beam", "input", "step", "scenes")
# The step benchmark's config when --config names none: the paper model and input shapes.
STEP_CONFIG = "configs/step_benchmark.py"

config_args.define_config_flag("config", "Training config (step).", lock_config=False)
flags.DEFINE_string("dataset", None, "Dataset directory (input).")
flags.DEFINE_integer("batch", None, "Per-device batch size (step); groups per batch (input).")
flags.DEFINE_integer("steps", None, "Timed steps or batches (median/mean over these).")
flags.DEFINE_float("minutes", None, "Minutes of generated content (ingest), per title "
                   "(ingest_beam).")
flags.DEFINE_integer("titles", None, "Titles (ingest_beam).")
flags.DEFINE_string("synthetic", None, "Synthetic set with labels.json (scenes).")
flags.DEFINE_integer("workers", None, "Worker processes of both paths (ingest_beam).")
flags.DEFINE_string("workdir", None, "Scratch directory; a temporary one if unset.")
flags.DEFINE_enum("crc", "both", ["both", "on", "off"], "input: with the records' CRC32C "
                  "checks, without, or both in one run (interleaved).")
flags.DEFINE_list("num_parallel", None, "input: measure the decode calls in flight instead: "
                  "the default data.num_parallel against these values, e.g. 2,4,8.")
flags.DEFINE_bool("memory", False, "step: count the step's residual memory per sample for "
                  "each model.norm x model.remat instead of timing it (avjax.step_memory).")
flags.DEFINE_bool("record", False, "Also write the figures into docs/benchmarks.md.")
flags.DEFINE_string("record_file", "docs/benchmarks.md", "Where --record writes.")


def _module(name, memory=False):
  # pylint: disable=g-import-not-at-top
  if name == "ingest":
    from avjax.bench import ingest as module
  elif name == "ingest_beam":
    from avjax.bench import ingest_beam as module
  elif name == "scenes":
    from avjax.bench import scenes as module
  elif name == "input":
    from avjax.bench import input as module  # pylint: disable=redefined-builtin
  elif memory:
    from avjax.bench import memory as module
  else:
    from avjax.bench import step as module
  return module


def main(argv):
  if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
    raise app.UsageError(f"usage: python -m avjax.benchmark {{{','.join(SUBCOMMANDS)}}} [flags]")
  console.setup()
  if argv[1] == "step" and flags.FLAGS.config is None:
    flags.FLAGS.config = config_args.load_config(STEP_CONFIG)
  if flags.FLAGS.config is not None:  # the same check as every training command
    from avjax import validate  # pylint: disable=g-import-not-at-top
    try:
      validate.check(flags.FLAGS.config)
    except validate.ConfigError as e:
      raise app.UsageError(str(e)) from None
  with console.native_output_to_log():
    module = _module(argv[1], memory=flags.FLAGS.memory)
  markdown = module.run(flags.FLAGS)
  print(markdown)
  if flags.FLAGS.record:
    title = module.section(flags.FLAGS) if hasattr(module, "section") else module.TITLE
    command = " ".join(["python -m avjax.benchmark"] + [
        a for a in sys.argv[1:] if not a.startswith("--record")])
    report.record_section(title, markdown, flags.FLAGS.record_file, command=command)
    print(f"recorded in {flags.FLAGS.record_file}")
