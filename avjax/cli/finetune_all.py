r"""Every split of every downstream dataset, and the Table 5 row (avjax.downstream.finetune_all).

  python -m avjax.finetune_all --init=runs/movie_k16/export \
      --roots=ucf101=data/ucf101,hmdb51=data/hmdb51,esc50=data/esc50 \
      --workdir=runs/movie_k16/downstream [--mode=linear] [--runlocal]

A root is a prepared directory (python -m avjax.prepare_downstream) or a dataset in its
standard layout, prepared once into WORKDIR/data/<dataset>. Rerunning the command skips
finished runs and resumes unfinished ones made with the same init, mode and config; a split
run earlier with others is refused (--rerun_mismatched moves it aside and runs it again).
`--init=` (empty) gives the from-scratch baseline.
"""

import os
import sys

from absl import app
from absl import flags

from avjax import config_args
from avjax import console
from avjax import sharding

flags.DEFINE_string("init", "", "Export dir of a pretraining run; empty: from scratch.")
flags.DEFINE_string("roots", None, "dataset=DIR,...: prepared dirs or raw dataset roots.")
flags.DEFINE_string("workdir", None, "Runs go to WORKDIR/<dataset>/split<k>.")
flags.DEFINE_enum("mode", "finetune", ["finetune", "linear"], "Fine-tune or linear probe.")
flags.DEFINE_bool("runlocal", False, "Tiny configs (a smoke test of the whole sweep).")
flags.DEFINE_string("splits", "", "Only these splits/folds, e.g. '1' (default: all).")
flags.DEFINE_string("overrides", "", "Config overrides for every run, e.g. "
                    "'eval_batch_size=16,data.num_parallel=8'.")
flags.DEFINE_string("name", "", "Method name in the table (default: the export's run name).")
flags.DEFINE_integer("workers", 1, "Processes for preparing raw roots.")
flags.DEFINE_bool("rerun_mismatched", False, "Splits run earlier in WORKDIR with another init, "
                  "mode or config are moved aside and run again (default: refused).")
flags.mark_flags_as_required(["roots", "workdir"])


def load_config(dataset, arg):
  """The run config of the shipped configs/downstream/<dataset>.py:ARGS."""
  return config_args.load_config(f"configs/downstream/{dataset}.py:{arg}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  f = flags.FLAGS
  console.setup(f.workdir if os.path.isdir(f.workdir) else None)
  sharding.maybe_initialize_distributed()
  # Imported here, not at the top: TensorFlow loads only when the command runs.
  with console.native_output_to_log():
    from avjax.downstream import finetune_all  # pylint: disable=g-import-not-at-top
  from avjax import loop  # pylint: disable=g-import-not-at-top
  roots = finetune_all.parse_roots(f.roots)
  console.attach_log(f.workdir)
  splits = {int(s) for s in f.splits.split(",") if s.strip()} or None
  try:
    summary = finetune_all.run_all(f.init, roots, f.workdir, load_config=load_config,
                                   mode=f.mode, runlocal=f.runlocal, splits=splits,
                                   overrides=f.overrides, name=f.name, workers=f.workers,
                                   rerun_mismatched=f.rerun_mismatched)
  except finetune_all.Preempted as e:
    print(e, file=sys.stderr)
    loop.exit_promptly(0)
  except loop.STOPPING_ERRORS as e:
    sys.exit(f"avjax.finetune_all: {e}")
  except loop.Interrupted as e:
    print(e, file=sys.stderr)
    loop.exit_promptly(130)
  print(finetune_all.markdown(summary))
  console.done("downstream evaluation", results=os.path.join(os.path.abspath(f.workdir),
                                                              "results.json"))
