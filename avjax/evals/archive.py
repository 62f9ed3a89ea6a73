"""A study's archive: every run's measures in one small committed file (JSON lines).

The archive is what a study's tables, tests and figures are made from (avjax.evals.study),
so that anyone can re-analyse a study without its workdirs, and a study can go on from
another machine: a run already in the archive is not run again (launch/study_sampling.sh).

Records, one JSON object per line, keyed by (kind, setting, seed):
  kind "study"     the header: description, settings, seeds, the pre-registered plan
  kind "run"       one pretraining run: its final measures, the curves of the measures and
                   of the loss over steps, the S+/S-/S!= histograms of its last step
  kind "baseline"  one seed's random initialisation (python -m avjax.discrepancy
                   --baseline): the step-0 encoders, BatchNorm recalibrated or not, and the
                   raw-input probes of the same snippets
Writers take a lock and rewrite the file atomically, so concurrent runs of a study can
record into one archive.
"""

import contextlib
import fcntl
import json
import os

import numpy as np

from avjax import fileio
from avjax.evals import discrepancy
from avjax.evals import measures
from avjax.evals import plots

KINDS = ("study", "run", "baseline")
DIGITS = 5  # significant digits kept of every measure


def _round(x):
  """Floats to DIGITS significant digits, recursively (a small, diff-friendly file)."""
  if isinstance(x, float):
    return float(f"{x:.{DIGITS}g}") if np.isfinite(x) else None
  if isinstance(x, dict):
    return {k: _round(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_round(v) for v in x]
  return x


def key(record):
  return (record["kind"], record.get("setting", ""), record.get("seed", -1))


def load(path):
  """(header or None, [run records], [baseline records]) of an archive file."""
  header, runs, baselines = None, [], []
  if not os.path.exists(path):
    return header, runs, baselines
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}, line {number}: not a JSON record ({e})") from None
      kind = record.get("kind")
      if kind not in KINDS:
        raise ValueError(f"{path}, line {number}: kind {kind!r}, expected one of {KINDS}")
      if kind == "study":
        header = record
      else:
        (runs if kind == "run" else baselines).append(record)
  return header, runs, baselines


@contextlib.contextmanager
def _locked(path):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def put(path, record):
  """Adds `record` to the archive, replacing the one with its key; atomic, under a lock."""
  record = _round(dict(record))
  with _locked(path):
    header, runs, baselines = load(path)
    records = ([header] if header else []) + runs + baselines
    records = [r for r in records if key(r) != key(record)] + [record]
    records.sort(key=lambda r: (KINDS.index(r["kind"]),) + key(r)[1:])
    with fileio.atomic_path(path) as tmp:
      with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
          f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def put_header(path, header):
  """Puts a study's header record, keeping what earlier sittings wrote: their seeds, and
  the data preparation time of the sitting that made the data (later ones find it)."""
  old = load(path)[0] or {}
  seeds = sorted(set(int(s) for s in header.get("seeds", [])) | set(old.get("seeds", [])))
  put(path, dict(header, seeds=seeds,
                 data_seconds=old.get("data_seconds") or header.get("data_seconds", 0)))


def has(path, kind, setting, seed):
  _, runs, baselines = load(path)
  return any(key(r) == (kind, setting, seed) for r in runs + baselines)


def reproduction(path, other, setting, seed):
  """How closely the run (setting, seed) of archive `path` reproduces the same run in archive
  `other`: the largest relative difference of their losses at the steps both logged, or
  None when either archive lacks the run."""
  def find(p):
    return next((r for r in load(p)[1] if key(r) == ("run", setting, int(seed))), None)
  a, b = find(path), find(other)
  if a is None or b is None:
    return None
  b_loss = dict((int(s), v) for s, v in b["loss"])
  common = [(v, b_loss[int(s)]) for s, v in a["loss"] if int(s) in b_loss]
  if not common:
    raise ValueError(f"{setting} seed {seed}: no step logged in both {path} and {other}")
  return max(abs(x - y) / max(abs(y), 1e-12) for x, y in common)


# ---------------------------------------------------------------------------
# What a record keeps of an evaluation entry (discrepancy.json) and a run's losses.


def measures_of(entry):
  """The measures of one evaluation entry: KLs with floors, means, separation, probes."""
  out = dict(step=entry["step"], kl=entry["kl"], gap=entry["gap"], mean=entry["mean"],
             kl_floor={k: v["p95"] for k, v in (entry.get("kl_floor") or {}).items()},
             num_titles=entry.get("num_titles"), num_snippets=entry.get("num_snippets"),
             pairs={k: dict(used=v["used"]) for k, v in (entry.get("pairs") or {}).items()})
  sep = (entry.get("separation") or {}).get("S+ - S!=")
  if sep:
    out["separation"] = dict(diff=sep["diff"], lo=sep["lo"], hi=sep["hi"])
  out.update({family: {k: v for k, v in entry[family].items() if k != "labels"}
              for family in discrepancy.PROBES
              if entry.get(family) and "skipped" not in entry[family]})
  if "hist" in entry:
    out["hist"] = entry["hist"]
  return out


def run_record(workdir, *, setting, seed, k, w, scenes="none", wall_seconds=None):
  """The archive record of a finished pretraining run (its discrepancy.json and losses)."""
  path = os.path.join(workdir, discrepancy.RESULTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: the run has no evaluation to archive")
  steps = fileio.read_json(path).get("steps", [])
  if not steps or not any(f in steps[-1] for f in discrepancy.PROBES):
    raise ValueError(f"{path}: the last evaluation has no probes (the run is not finished)")
  final = measures_of(steps[-1])
  curve = [dict(step=e["step"], kl=e["kl"],
                kl_floor={k: v["p95"] for k, v in (e.get("kl_floor") or {}).items()},
                gap=e["gap"]) for e in steps]
  losses = plots.read_losses(workdir)
  return dict(kind="run", setting=setting, seed=int(seed), k=int(k), w=int(w), scenes=scenes,
              final=final, curve=curve, loss=[[s, losses[s]] for s in sorted(losses)],
              wall_seconds=wall_seconds)


def loss_record(workdir, *, setting, seed, k, w, scenes="none", wall_seconds=None):
  """The archive record of a finished run made without evaluations (launch/transfer.sh's
  pretraining): its losses alone, enough for `reproduction`."""
  losses = plots.read_losses(workdir)
  if not losses:
    raise ValueError(f"{workdir}/metrics.jsonl: no loss logged (the run is not finished)")
  return dict(kind="run", setting=setting, seed=int(seed), k=int(k), w=int(w), scenes=scenes,
              loss=[[s, losses[s]] for s in sorted(losses)], wall_seconds=wall_seconds)


def baseline_record(workdir, *, seed):
  """The archive record of a seed's random-initialisation baseline (baseline.json)."""
  path = os.path.join(workdir, discrepancy.BASELINE_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no baseline (python -m avjax.discrepancy --baseline)")
  return dict(kind="baseline", setting="random init", seed=int(seed),
              final=measures_of(fileio.read_json(path)))


def histogram(entry):
  """(edges, {set: mass}, smoothing) of an archived entry's histograms, or None."""
  hist = entry.get("hist")
  if not hist:
    return None
  edges = np.linspace(hist["lo"], hist["hi"], int(hist["bins"]) + 1)
  return edges, {name: np.asarray(hist["mass"][name], np.float64) for name in measures.SETS}, \
      float(hist.get("smoothing", 0.0))
