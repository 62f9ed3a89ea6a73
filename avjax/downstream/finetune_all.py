"""Every split of every downstream dataset, and a table in the layout of the paper's Table 5.

`run_all` (python -m avjax.finetune_all) runs UCF101 splits 1-3, HMDB51 splits 1-3 and
ESC-50 folds 1-5 (those of the datasets named in --roots) one after another with the
fine-tuning task, each in WORKDIR/<dataset>/split<k> with the config of
configs/downstream/<dataset>.py (which the command reads), and writes WORKDIR/results.json
and WORKDIR/results.md: per-split and mean top-1 (paper Section 4.1: "we report the
average performance over all splits").

A root is a prepared directory (python -m avjax.prepare_downstream) or a dataset in its
standard layout, which is then prepared once into WORKDIR/data/<dataset>. Rerunning the
command skips finished runs and resumes unfinished ones from their checkpoints, but only
runs whose recorded config (init, mode and the fields that define a run,
avjax.resume.run_fields) is the one asked for: any other is refused with the difference
before anything runs, or, with `rerun_mismatched`, moved aside and run again. The table is
built from each split's own results.json. `--init=` (empty) gives the from-scratch baseline.
"""

import os
import time

from absl import logging

import jax

from avjax import config_args
from avjax import fileio
from avjax import resume
from avjax import validate
from avjax import workdir as workdir_lib
from avjax.data import layouts
from avjax.downstream import config as downstream_config
from avjax.downstream import prepare
from avjax.downstream import task


DATASETS = ("hmdb51", "ucf101", "esc50")  # the column order of Table 5
TITLES = {"hmdb51": "HMDB51", "ucf101": "UCF101", "esc50": "ESC50"}
ARCH_NAMES = {"r2plus1d_18": "R(2+1)D-18", "resnet18_audio": "ResNet-18"}


class Preempted(SystemExit):
  """A run stopped before the end of its schedule (its checkpoint is saved); rerun to go on."""


class MismatchedRunError(resume.ResumeConfigError):
  """A split's earlier run (finished or not) was made with another init, mode or config."""


def recorded_mismatch(run_dir, config):
  """[(field, recorded, requested)] where the earlier run in `run_dir` differs from `config`
  in a field that defines the run; [] when they agree or there is no earlier run.

  The record is the run's config.json (written when it started, kept up to date by
  allowed restarts), or, without one, the init and mode in its results.json.
  """
  config_path = os.path.join(run_dir, resume.CONFIG_FILE)
  results_path = os.path.join(run_dir, task.RESULTS)
  requested = resume.run_fields(config)
  if os.path.exists(config_path):
    recorded = resume.run_fields(fileio.read_json(config_path))
  elif os.path.exists(results_path):
    results = fileio.read_json(results_path)
    recorded = {k: results[k] for k in ("init", "mode") if k in results}
  else:
    return []
  changes = resume.changed_fields(recorded, requested)
  # A relative init recorded from the same folder names the same export.
  return [(name, a, b) for name, a, b in changes
          if not (name in resume.UNDEFAULTED_FIELDS and isinstance(a, str) and a and b
                  and os.path.abspath(a) == os.path.abspath(b))]


def _set_aside(run_dir):
  """Moves an earlier run out of the way (never deletes it); returns its new path."""
  target = f"{run_dir}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
  n = 1
  while os.path.exists(target):
    target = f"{run_dir}.replaced-{time.strftime('%Y%m%d-%H%M%S')}.{n}"
    n += 1
  os.rename(run_dir, target)
  return target


def check_earlier_runs(plan, workdir, config_of, *, rerun_mismatched=False):
  """Refuses (MismatchedRunError, one line per field and split) when a split's earlier run
  differs from what is asked, unless `rerun_mismatched`: then those runs are moved aside
  (WORKDIR/<dataset>/split<k>.replaced-<time>) and will be run again."""
  found = []
  for dataset, split, config in ((d, s, config_of(d, s)) for d, s in plan):
    run_dir = os.path.join(workdir, dataset, f"split{split}")
    changes = recorded_mismatch(run_dir, config)
    if changes:
      found.append((dataset, split, run_dir, changes))
  if not found:
    return
  if rerun_mismatched:
    for dataset, split, run_dir, changes in found:
      logging.warning("%s split %d was run with %s; moved it to %s and running it again",
                      dataset, split, ", ".join(f"{n}={a!r}" for n, a, _ in changes),
                      _set_aside(run_dir))
    return
  lines = [f"  {dataset} split {split} ({run_dir}): {name} was {a!r}, now {b!r}"
           for dataset, split, run_dir, changes in found for name, a, b in changes]
  raise MismatchedRunError(
      "earlier runs in this workdir were made with another init, mode or config:\n"
      + "\n".join(lines) + "\nUse another --workdir for this evaluation, or pass "
      "--rerun_mismatched to move those runs aside and run them again.")


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
            overrides="", name="", workers=1, rerun_mismatched=False):
  """Runs (or resumes, or skips when finished) every split; writes and returns the summary.

  `load_config(dataset, ARGS)` is the run config of configs/downstream/<dataset>.py:ARGS.
  A split run earlier with another init, mode or config is refused (MismatchedRunError),
  or with `rerun_mismatched` moved aside and run again.
  """
  workdir = os.path.abspath(workdir)
  init = os.path.abspath(init) if init else ""  # recorded as it names the export anywhere
  with workdir_lib.lock(workdir, "finetune_all"):
    plan = [(d, s) for d in DATASETS if d in roots for s in layouts.SPLITS[d]
            if not splits or s in splits]

    def config_of(dataset, split, data):
      arg = f"data={data},split={split},mode={mode},init={init}" + (
          ",runlocal" if runlocal else "")
      return apply_overrides(load_config(dataset, arg), overrides)
    # Every run's config is checked before anything is prepared or written.
    for dataset, split in plan:
      config = config_of(dataset, split, roots[dataset])
      try:
        validate.raise_problems(validate.problems(config, device_count=jax.device_count())
                                + downstream_config.problems(config))
      except validate.ConfigError as e:
        raise validate.ConfigError(f"{dataset} split {split}: {e}") from None
    check_earlier_runs(plan, workdir, lambda d, s: config_of(d, s, roots[d]),
                       rerun_mismatched=rerun_mismatched)
    runs = []
    for dataset in (d for d in DATASETS if d in roots):
      data = prepared_dir(dataset, roots[dataset], workdir, workers)
      for split in (s for d, s in plan if d == dataset):
        run_dir = os.path.join(workdir, dataset, f"split{split}")
        results_path = os.path.join(run_dir, task.RESULTS)
        if os.path.exists(results_path):
          logging.info("%s split %d: finished earlier with the same config (%s)", dataset,
                       split, results_path)
        else:
          config = config_of(dataset, split, data)
          logging.info("%s split %d -> %s", dataset, split, run_dir)
          if task.train_and_evaluate(config, run_dir) is None:  # preempted: the rerun resumes
            raise Preempted(f"{dataset} split {split} stopped before the end; rerun to resume")
        # The table holds what each split's own results.json says it came from.
        runs.append(dict(fileio.read_json(results_path), results=results_path))
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


def _one(values, what):
  """The value all runs share, or "mixed" (earlier results of another kind in the table)."""
  values = set(values)
  if len(values) > 1:
    logging.warning("the table mixes runs of different %s: %s", what, sorted(values))
    return "mixed"
  return values.pop() if values else None


def summarize(runs, *, init="", mode="finetune", name=""):
  """{"datasets": {dataset: {"splits": {k: top1}, "mean": top1}}, ...} from run results.

  Init and mode are what the runs' results record (`init`, `mode`: the request, for results
  that do not record them).
  """
  init = _one((r.get("init", init) for r in runs), "inits") if runs else init
  mode = _one((r.get("mode", mode) for r in runs), "modes") if runs else mode
  method, pretraining = _describe_init(init) if init != "mixed" else ("mixed", "?")
  datasets, arch = {}, {}
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
    cells = [pct(ds[d]["splits"].get(str(k))) for k in range(1, 6)]
    lines.append(f"| {TITLES[d]} | " + " | ".join(cells) + f" | {pct(ds[d]['mean'])} |")
  runs = [r for r in summary.get("runs", ()) if "results" in r]
  if runs:
    lines += ["", "Where each number comes from:", "", "| Dataset | split | mode | init | "
              "top-1 % | results |", "|---|---:|---|---|---:|---|"]
    for r in runs:
      init = r.get("init") or r.get("init_torch") or "from scratch"
      changed = " (resumed with changes)" if r.get("resumed_with_changes") else ""
      lines.append(f"| {TITLES.get(r['dataset'], r['dataset'])} | {r['split']} | "
                   f"{r.get('mode', '?')}{changed} | {init} | {pct(r['top1'])} | "
                   f"{r['results']} |")
  return "\n".join(lines) + "\n"
