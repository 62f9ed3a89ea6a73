"""Every split of every downstream dataset, and a table in the layout of the paper's Table 5.

`run_all` (python -m avjax.finetune_all) runs UCF101 splits 1-3, HMDB51 splits 1-3 and
ESC-50 folds 1-5 (those of the datasets named in --roots) one after another with the
fine-tuning task, each in WORKDIR/<dataset>/split<k> with the config of
configs/downstream/<dataset>.py (which the command reads), and writes WORKDIR/results.json
and WORKDIR/results.md: per-split and mean top-1 (paper Section 4.1: "we report the
average performance over all splits").

A root is a prepared directory (python -m avjax.prepare_downstream) or a dataset in its
standard layout, which is then prepared once into WORKDIR/data/<dataset>. Rerunning the
command skips finished runs and resumes unfinished ones from their checkpoints.
`--init=` (empty) gives the from-scratch baseline.
"""

import os

from absl import logging

import jax

from avjax import config_args
from avjax import fileio
from avjax import validate
from avjax.downstream import config as downstream_config
from avjax.data import layouts
from avjax.downstream import prepare
from avjax.downstream import task


DATASETS = ("hmdb51", "ucf101", "esc50")  # the column order of Table 5
TITLES = {"hmdb51": "HMDB51", "ucf101": "UCF101", "esc50": "ESC50"}
ARCH_NAMES = {"r2plus1d_18": "R(2+1)D-18", "resnet18_audio": "ResNet-18"}


class Preempted(SystemExit):
  """A run stopped before the end of its schedule (its checkpoint is saved); rerun to go on."""


def parse_roots(text):
  """'ucf101=DIR,esc50=DIR' -> {"ucf101": DIR, "esc50": DIR}; unknown names are errors."""
  roots = {}
  for item in filter(None, (s.strip() for s in (text or "").split(","))):
    name, sep, path = item.partition("=")
    if not sep or not path:
      raise ValueError(f"--roots item {item!r}: expected dataset=DIR")
    if name not in DATASETS:
      raise ValueError(f"--roots: unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    roots[name] = path
  if not roots:
    raise ValueError("--roots names no dataset")
  return roots


def apply_overrides(config, text):
  """Sets 'a.b=value,...' on a ConfigDict, each value typed like the field it replaces."""
  for item in filter(None, (s.strip() for s in (text or "").split(","))):
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"override {item!r}: expected key=value")
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise ValueError(f"override {key!r}: no such config field")
    old = node[leaf]
    node[leaf] = value if old is None else config_args.parse_arg(
        f"{leaf}={value}", **{leaf: old})[leaf]
  return config


def prepared_dir(dataset, root, workdir, workers=1):
  """`root` if it is a prepared directory, else its preparation into WORKDIR/data/<dataset>."""
  if os.path.exists(os.path.join(root, prepare.MANIFEST)):
    return root
  output = os.path.join(workdir, "data", dataset)
  logging.info("%s: %s is not a prepared directory; preparing it into %s", dataset, root, output)
  report = prepare.prepare(dataset, root, output, workers=workers)
  skipped = report["counts"]["unreadable"] + report["counts"]["missing"]
  if skipped:
    logging.warning("%s: %d clip(s) skipped; see %s", dataset, skipped,
                    os.path.join(output, prepare.REPORT))
  return output


def run_all(init, roots, workdir, *, load_config, mode="finetune", runlocal=False, splits=None,
            overrides="", name="", workers=1):
  """Runs (or resumes, or skips when finished) every split; writes and returns the summary.

  `load_config(dataset, ARGS)` is the run config of configs/downstream/<dataset>.py:ARGS.
  """
  workdir = os.path.abspath(workdir)
  plan = [(d, s) for d in DATASETS if d in roots for s in layouts.SPLITS[d]
          if not splits or s in splits]

  def config_of(dataset, split, data):
    arg = f"data={data},split={split},mode={mode},init={init}" + (",runlocal" if runlocal else "")
    return apply_overrides(load_config(dataset, arg), overrides)
  # Every run's config is checked before anything is prepared or written.
  for dataset, split in plan:
    config = config_of(dataset, split, roots[dataset])
    try:
      validate.raise_problems(validate.problems(config, device_count=jax.device_count())
                              + downstream_config.problems(config))
    except validate.ConfigError as e:
      raise validate.ConfigError(f"{dataset} split {split}: {e}") from None
  runs = []
  for dataset in DATASETS:
    if dataset not in roots:
      continue
    data = prepared_dir(dataset, roots[dataset], workdir, workers)
    for split in layouts.SPLITS[dataset]:
      if splits and split not in splits:
        continue
      run_dir = os.path.join(workdir, dataset, f"split{split}")
      results_path = os.path.join(run_dir, task.RESULTS)
      if os.path.exists(results_path):
        logging.info("%s split %d: finished earlier (%s)", dataset, split, results_path)
        runs.append(fileio.read_json(results_path))
        continue
      config = config_of(dataset, split, data)
      logging.info("%s split %d -> %s", dataset, split, run_dir)
      result = task.train_and_evaluate(config, run_dir)
      if result is None:  # preempted: the rerun resumes
        raise Preempted(f"{dataset} split {split} stopped before the end; rerun to resume")
      runs.append(result)
  summary = summarize(runs, init=init, mode=mode, name=name)
  fileio.write_json(os.path.join(workdir, "results.json"), summary)
  with fileio.atomic_path(os.path.join(workdir, "results.md")) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(markdown(summary))
  logging.info("wrote %s and %s", os.path.join(workdir, "results.json"),
               os.path.join(workdir, "results.md"))
  return summary


def _describe_init(init):
  """(method name, pretraining dataset) of an export, from the run's config.json if beside it."""
  if not init:
    return "from scratch", "none"
  init = os.path.abspath(init)
  run = os.path.dirname(init) if os.path.basename(init) == "export" else init
  dataset = "?"
  config_path = os.path.join(run, "config.json")
  if os.path.exists(config_path):
    data = fileio.read_json(config_path).get("data", {}).get("dataset")
    if data:
      dataset = "+".join(os.path.basename(os.path.normpath(d)) for d in
                         (data if isinstance(data, list) else [data]))
  return os.path.basename(run), dataset


def summarize(runs, *, init="", mode="finetune", name=""):
  """{"datasets": {dataset: {"splits": {k: top1}, "mean": top1}}, ...} from run results."""
  method, pretraining = _describe_init(init)
  datasets = {}
  arch = {}
  for r in runs:
    d = datasets.setdefault(r["dataset"], {"splits": {}})
    d["splits"][str(r["split"])] = r["top1"]
    kind = "audio" if r["dataset"] == "esc50" else "video"
    if r.get("encoder"):
      arch[kind] = r["encoder"].get("name", "?")
  for d in datasets.values():
    d["splits"] = dict(sorted(d["splits"].items(), key=lambda kv: int(kv[0])))
    d["mean"] = sum(d["splits"].values()) / len(d["splits"])
  return dict(method=name or method, init=init, mode=mode, pretraining=pretraining,
              arch={k: ARCH_NAMES.get(v, v) for k, v in arch.items()}, datasets=datasets,
              runs=runs)


def markdown(summary):
  """The Table 5 row (mean top-1 %) and a per-split table."""
  def pct(x):
    return f"{100 * x:.1f}" if x is not None else "–"
  ds = summary["datasets"]
  lines = [f"# Downstream top-1 accuracy ({summary['mode']})", "",
           "| Method | Arch. | pretraining dataset | HMDB51 | UCF101 | ESC50 |",
           "|---|---|---|---:|---:|---:|"]
  arch = summary["arch"].get("video") or summary["arch"].get("audio") or "?"
  means = [pct(ds[d]["mean"]) if d in ds else "–" for d in DATASETS]
  lines.append(f"| {summary['method']} | {arch} | {summary['pretraining']} | "
               + " | ".join(means) + " |")
  lines += ["", "Per split (ESC50: folds), top-1 %; mean over the splits run:", "",
            "| Dataset | 1 | 2 | 3 | 4 | 5 | mean |", "|---|---:|---:|---:|---:|---:|---:|"]
  for d in DATASETS:
    if d not in ds:
      continue
    cells = [pct(ds[d]["splits"].get(str(k))) if str(k) in ds[d]["splits"] else "–"
             for k in range(1, 6)]
    lines.append(f"| {TITLES[d]} | " + " | ".join(cells) + f" | {pct(ds[d]['mean'])} |")
  return "\n".join(lines) + "\n"
