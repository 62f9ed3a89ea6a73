r"""Benchmarks: `python -m avjax.benchmark {ingest,input,step} [flags]`.

  python -m avjax.benchmark ingest [--minutes=2]               # ingest speed, x real time per core
  python -m avjax.benchmark input --dataset=DIR                 # snippets/s per core, peak host memory
  python -m avjax.benchmark step --config=configs/pretrain.py:ARGS --batch=64   # update-step speed
  python -m avjax.benchmark step --memory       # residual GiB per sample, norm x remat

Each prints its figures; `--record` also writes them into docs/benchmarks.md under the
benchmark's own heading, with the machine named. Subcommands are imported lazily, so
`step` never imports TensorFlow and runs on a host with only JAX installed.
"""

import datetime
import importlib
import os
import platform
import re

from absl import app
from absl import flags
from ml_collections import config_flags

from avjax import fileio

SUBCOMMANDS = {
    "ingest": "avjax.data.ingest_benchmark",
    "input": "avjax.data.pipeline_benchmark",
    "step": "avjax.step_benchmark",
}

config_flags.DEFINE_config_file("config", None, "Training config (step).", lock_config=False)
flags.DEFINE_string("dataset", None, "Dataset directory (input).")
flags.DEFINE_integer("batch", None, "Per-device batch size (step); groups per batch (input).")
flags.DEFINE_integer("steps", None, "Timed steps or batches (median/mean over these).")
flags.DEFINE_float("minutes", None, "Minutes of generated content (ingest).")
flags.DEFINE_string("workdir", None, "Scratch directory; a temporary one if unset.")
flags.DEFINE_bool("memory", False, "step: count the step's residual memory per sample for "
                  "each model.norm x model.remat instead of timing it (avjax.step_memory).")
flags.DEFINE_bool("record", False, "Also write the figures into docs/benchmarks.md.")
flags.DEFINE_string("record_file", "docs/benchmarks.md", "Where --record writes.")


def machine_description():
  """One line naming the machine the figures were measured on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    if names:
      cpu = names[0]
  except OSError:
    pass
  accel = ""
  try:
    import jax  # pylint: disable=g-import-not-at-top
    dev = jax.devices()[0]
    if dev.platform != "cpu":
      accel = f", {jax.device_count()}x {dev.device_kind}"
  except Exception:  # pylint: disable=broad-except
    pass
  return f"{os.cpu_count()} cores ({cpu}){accel}, Python {platform.python_version()}"


def record_section(name, markdown, path=None):
  """Replaces the `## <name>` section of docs/benchmarks.md with `markdown` (atomic)."""
  path = path or flags.FLAGS.record_file
  text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# avjax benchmarks\n"
  stamp = datetime.date.today().isoformat()
  section = f"## {name}\n\n_Measured {stamp} on {machine_description()}._\n\n{markdown.strip()}\n"
  pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text)
  else:
    text = text.rstrip("\n") + "\n\n" + section
  with fileio.atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text.rstrip("\n") + "\n")


def main(argv):
  if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
    raise app.UsageError(f"usage: python -m avjax.benchmark {{{','.join(SUBCOMMANDS)}}} [flags]")
  name = SUBCOMMANDS[argv[1]]
  if argv[1] == "step" and flags.FLAGS.memory:
    name = "avjax.step_memory"
  module = importlib.import_module(name)
  markdown = module.run(flags.FLAGS)
  print(markdown)
  if flags.FLAGS.record:
    record_section(module.TITLE, markdown)
    print(f"recorded in {flags.FLAGS.record_file}")


if __name__ == "__main__":
  app.run(main)
