r"""Discrepancy measures (paper Section 3, Eq. 2) and the event probe of a pretraining run.

  python -m avjax.discrepancy --workdir=runs/k16 [--step=N | --all_steps] [--max_pairs=1000000]
  python -m avjax.discrepancy --workdir=runs/k16 --baseline

Restores checkpoints of a pretraining workdir (config from WORKDIR/config.json), embeds
every held-out snippet, and writes S+/S-/S!= KLs, figures and the linear probe
(avjax.evals.discrepancy) into the workdir. During training,
`--config.evals.discrepancy=N` computes the same every N steps. `--baseline` evaluates the
run's random initialisation instead (needs only config.json): the step-0 encoders as they
are and with BatchNorm recalibrated, and raw-input probes of the same snippets, into
WORKDIR/baseline.json (avjax.evals.offline).
"""

import os
import sys

from absl import app
from absl import flags

from avjax import console
from avjax import sharding
from avjax.evals import discrepancy
from avjax.evals import offline
from avjax.evals import summary

_D = discrepancy.default_config()
flags.DEFINE_string("workdir", None, "A pretraining workdir (config.json, checkpoints/).",
                    required=True)
flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.DEFINE_bool("all_steps", False, "Evaluate every kept checkpoint (curves vs step).")
flags.DEFINE_bool("baseline", False, "Evaluate the run's random initialisation (step-0 "
                  "encoders, BatchNorm recalibrated or not, raw inputs) into baseline.json.")
flags.DEFINE_integer("max_pairs", _D.max_pairs, "Pairs per set before uniform subsampling.")
flags.DEFINE_integer("bins", _D.bins, "Shared histogram bins.")
flags.DEFINE_float("smoothing", _D.smoothing, "Pseudo-counts per bin.")
flags.DEFINE_integer("seed", _D.seed, "Seed of the pair subsample and probe title draw.")
flags.DEFINE_string("labels", _D.labels, "labels.json for the probe (default: found next "
                    "to the dataset's sources).")
flags.DEFINE_bool("probe", True, "Run the linear probes (--noprobe to skip).")
flags.DEFINE_bool("random_init", _D.random_init, "Also probe the run's random-init encoders.")
flags.DEFINE_integer("probe_max_train_snippets", _D.probe_max_train_snippets,
                     "Training-title snippets the probes fit on (whole titles, by seed).")
flags.DEFINE_integer("floor_rounds", _D.floor_rounds, "Random splits per KL noise floor.")
flags.DEFINE_integer("bootstrap_rounds", _D.bootstrap_rounds,
                     "Title-bootstrap replicates of mean S+ - mean S!= (and S-).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  console.setup(f.workdir if os.path.isdir(f.workdir) else None)
  sharding.maybe_initialize_distributed()
  names = ("bins", "smoothing", "max_pairs", "labels", "seed", "random_init", "floor_rounds",
           "probe_max_train_snippets", "bootstrap_rounds")
  overrides = {name: f[name].value for name in names if f[name].present}
  if not f.probe:
    overrides["probe"] = False
  steps = "all" if f.all_steps else None if f.step is None else [f.step]
  # Imported here, not at the top: TensorFlow (the eval input) loads only when it runs.
  with console.native_output_to_log():
    from avjax.data import pipeline  # pylint: disable=g-import-not-at-top
  from avjax import validate  # pylint: disable=g-import-not-at-top
  try:
    if f.baseline:
      entry = offline.evaluate_baseline(f.workdir, pipeline.EvalData, overrides=overrides)
      print("\n".join(summary.summary_lines(entry)))
      console.done("random-initialisation baseline",
                   results=os.path.join(os.path.abspath(f.workdir), discrepancy.BASELINE_FILE))
      return
    entries = offline.evaluate_workdir(f.workdir, pipeline.EvalData, steps=steps,
                                       overrides=overrides)
  except validate.ConfigError as e:
    sys.exit(f"avjax.discrepancy: {e}")
  for entry in entries:
    print("\n".join(summary.summary_lines(entry)))
  workdir = os.path.abspath(f.workdir)
  console.done(f"discrepancy measures of step(s) {', '.join(str(e['step']) for e in entries)}",
               results=os.path.join(workdir, "discrepancy.json"),
               figures=os.path.join(workdir, "discrepancy_*.png"))
