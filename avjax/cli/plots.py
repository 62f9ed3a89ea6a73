r"""Figures of pretraining runs, and the report of the sampling study.

  python -m avjax.plots --runs=runs/k1,runs/k16 --output=loss.png [--labels=k=1,k=16]
      training loss of several runs on one plot (paper Figure 3), from each run's
      metrics.jsonl; runs sharing a label are seeds of one setting (mean +- std)
  python -m avjax.plots --study=STUDY_ROOT/study.json --doc=docs/study_sampling.md \
      --figures=docs/study_sampling
      the table (paper Table 1 layout) and figures of launch/study_sampling.sh
"""

import os

from absl import app
from absl import flags

from avjax import console
from avjax.evals import plots
from avjax.evals import study

flags.DEFINE_string("runs", None, "Comma-separated pretraining workdirs.")
flags.DEFINE_string("labels", None, "Comma-separated legend labels (runs sharing a "
                    "label are averaged); default: the workdir names.")
flags.DEFINE_string("output", None, "PNG to write.")
flags.DEFINE_integer("smooth", 1, "Moving-average window over logged steps.")
flags.DEFINE_string("study", None, "study.json written by launch/study_sampling.sh.")
flags.DEFINE_string("doc", None, "Markdown report to write (with --study).")
flags.DEFINE_string("figures", None, "Folder for the report's PNGs (with --study).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  console.setup()
  if f.study:
    if not f.doc or not f.figures:
      raise app.UsageError("--study needs --doc and --figures")
    rows = study.write_study_report(f.study, f.doc, f.figures)
    print(study.probe_table(rows))
    print(study.discrepancy_table(rows))
    return
  if not f.runs or not f.output:
    raise app.UsageError("give --runs=DIR1,DIR2 and --output=loss.png (or --study=...)")
  runs = [r for r in f.runs.split(",") if r]
  labels = f.labels.split(",") if f.labels else [os.path.basename(os.path.normpath(r))
                                                  for r in runs]
  if len(labels) != len(runs):
    raise app.UsageError(f"{len(labels)} labels for {len(runs)} runs")
  groups = {}
  for label, run in zip(labels, runs):
    groups.setdefault(label, []).append(run)  # runs sharing a label: seeds, averaged
  plots.plot_losses(groups, f.output, smooth=f.smooth)
  print(f"wrote {f.output}")

