r"""Benchmarks: `python -m avjax.benchmark {ingest,input,step} [flags]`.

  python -m avjax.benchmark ingest [--minutes=2]               # ingest speed, x real time per core
  python -m avjax.benchmark input --dataset=DIR                 # snippets/s per core, peak host memory
  python -m avjax.benchmark step --config=configs/pretrain.py:ARGS --batch=64   # update-step speed

Each prints its figures; `--record` also writes them into docs/benchmarks.md under the
benchmark's own heading, with the machine named. Each subcommand is imported only when
it runs, so `step` never imports TensorFlow and runs on a host with only JAX installed.
"""

from absl import app
from absl import flags

from avjax import config_args
from avjax.bench import report

SUBCOMMANDS = ("ingest", "input", "step")

config_args.define_config_flag("config", "Training config (step).", lock_config=False)
flags.DEFINE_string("dataset", None, "Dataset directory (input).")
flags.DEFINE_integer("batch", None, "Per-device batch size (step); groups per batch (input).")
flags.DEFINE_integer("steps", None, "Timed steps or batches (median/mean over these).")
flags.DEFINE_float("minutes", None, "Minutes of generated content (ingest).")
flags.DEFINE_string("workdir", None, "Scratch directory; a temporary one if unset.")
flags.DEFINE_enum("crc", "both", ["both", "on", "off"], "input: with the records' CRC32C "
                  "checks, without, or both in one run (interleaved).")
flags.DEFINE_bool("record", False, "Also write the figures into docs/benchmarks.md.")
flags.DEFINE_string("record_file", "docs/benchmarks.md", "Where --record writes.")


def _module(name):
  # pylint: disable=g-import-not-at-top
  if name == "ingest":
    from avjax.bench import ingest as module
  elif name == "input":
    from avjax.bench import input as module  # pylint: disable=redefined-builtin
  else:
    from avjax.bench import step as module
  return module


def main(argv):
  if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
    raise app.UsageError(f"usage: python -m avjax.benchmark {{{','.join(SUBCOMMANDS)}}} [flags]")
  module = _module(argv[1])
  markdown = module.run(flags.FLAGS)
  print(markdown)
  if flags.FLAGS.record:
    report.record_section(module.TITLE, markdown, flags.FLAGS.record_file)
    print(f"recorded in {flags.FLAGS.record_file}")


if __name__ == "__main__":
  app.run(main)
