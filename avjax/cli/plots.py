r"""Figures of pretraining runs, and the reports of the sampling study and the transfer table.

  python -m avjax.plots --runs=runs/k1,runs/k16 --output=loss.png [--labels=k=1,k=16]
      training loss of several runs on one plot (paper Figure 3), from each run's
      metrics.jsonl; runs sharing a label are seeds of one setting (mean +- std)
  python -m avjax.plots --study=docs/study_sampling/v3/runs.jsonl \
      --doc=docs/study_sampling.md --figures=docs/study_sampling/v3
      the tables (paired tests, Holm) and figures of a study (launch/study_sampling.sh),
      from its archive alone
  python -m avjax.plots --transfer=docs/transfer/runs.jsonl --doc=docs/downstream.md
      the transfer table (launch/transfer.sh; paper Table 1's layout, paired tests, Holm)
      into the doc's generated block, from its archive alone
  python -m avjax.plots --repeats=DATASET_DIR|preset:NAME [--batch=64] \
      [--settings="1:-1 4:-1 16:-1 16:16"]
      how often batches of i.i.d. groups (the sampler's law before batches kept titles
      distinct) repeat a snippet, on a dataset's training titles or on a synthetic preset's
      planned ones
"""

import os

from absl import app
from absl import flags

from avjax import console
from avjax import fileio
from avjax.evals import plots
from avjax.evals import study
from avjax.evals import study_report
from avjax.evals import transfer_table

flags.DEFINE_string("runs", None, "Comma-separated pretraining workdirs.")
flags.DEFINE_string("labels", None, "Comma-separated legend labels (runs sharing a "
                    "label are averaged); default: the workdir names.")
flags.DEFINE_string("output", None, "PNG to write.")
flags.DEFINE_integer("smooth", 1, "Moving-average window over logged steps.")
flags.DEFINE_string("study", None, "A study's archive (runs.jsonl, launch/study_sampling.sh).")
flags.DEFINE_string("transfer", None, "The transfer table's archive (runs.jsonl, "
                    "launch/transfer.sh).")
flags.DEFINE_string("doc", None, "Markdown report to write (with --study or --transfer).")
flags.DEFINE_string("figures", None, "Folder for the report's PNGs (with --study).")
flags.DEFINE_string("repeats", None, "A dataset dir, or preset:NAME: snippet repeats of "
                    "i.i.d. groups in a batch, per sampling setting.")
flags.DEFINE_integer("batch", 64, "Batch size B (with --repeats).")
flags.DEFINE_string("settings", "1:-1 4:-1 16:-1 16:16", "k:w settings (with --repeats).")


def _training_counts(source):
  """M_n of the training titles: of a dataset's manifest, or planned by a synthetic preset
  (its lengths and the ingest's split, without rendering anything)."""
  if source.startswith("preset:"):
    # pylint: disable=g-import-not-at-top
    from avjax.ingest import discover
    from avjax.synthetic import plan as synthetic_plan
    from avjax.synthetic import presets as synthetic_presets
    c = synthetic_presets.preset(source.split(":", 1)[1])
    plans = synthetic_plan.plan_collection(movies=c["movies"], shows=c["shows"],
                                           episodes=c["episodes"], minutes=c["minutes"],
                                           seed=0, options=c["options"])
    seconds = c["options"].snippet_seconds
    return [int((p["duration"] + 1e-9) // seconds) for p in plans
            if discover.split_of(p, c["ingest"]["val_fraction"]) == "train"]
  manifest = fileio.read_json(os.path.join(source, "manifest.json"))
  return [t["num_snippets"] for t in manifest["titles"] if t["split"] == "train"]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  console.setup()
  if f.study:
    if not f.doc or not f.figures:
      raise app.UsageError("--study needs --doc and --figures")
    result = study_report.write_report(f.study, f.doc, f.figures)
    print("\n".join(study_report.verdict_lines(result, result["header"])))
    print(f"wrote {f.doc} and the figures in {f.figures}")
    return
  if f.transfer:
    if not f.doc:
      raise app.UsageError("--transfer needs --doc")
    result = transfer_table.write_report(f.transfer, f.doc)
    print("\n".join(transfer_table.summary_lines(result)))
    print(f"wrote {f.doc}")
    return
  if f.repeats:
    counts = _training_counts(f.repeats)
    print(f"{len(counts)} training titles, {sum(counts)} snippets, batch {f.batch}: snippet "
          "repeats in a batch of i.i.d. groups")
    for text in f.settings.split():
      s = study.parse_setting(text)
      frac, mean = study.repeats_iid_groups(counts, s["k"], s["w"], f.batch)
      print(f"  {s['label']:14s} batches with a repeat {100 * frac:5.1f}%   repeated "
            f"snippets per batch {mean:.2f}")
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
