"""Figures (PNG, matplotlib Agg): S+/S-/S!= densities, divergences against step (paper
Figure 1) and training loss of several runs (Figure 3)."""

import json
import os

import numpy as np

from avjax import fileio
from avjax.evals import measures

COLORS = {"S+": "tab:green", "S-": "tab:orange", "S!=": "tab:blue"}
DPI = 80


def pretty(name):
  """"KL(S-||S!=)" -> "KL(S− ‖ S≠)" for figure labels."""
  return name.replace("!=", "≠").replace("S-", "S−").replace("||", " ‖ ")


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with fileio.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight")
  _pyplot().close(fig)


# ---------------------------------------------------------------------------
# Discrepancy figures.


def histogram_density(mass, used, smoothing, width):
  """Density per bin of a set's histogram without its pseudo-counts.

  The KLs need the `smoothing` pseudo-counts per bin (no empty bins); a figure must not
  show them: with few pairs they would draw a flat floor under the whole axis. The mass
  was (count + smoothing) / (used + bins * smoothing), so the counts come back exactly.
  """
  mass = np.asarray(mass, np.float64)
  if not used or not np.all(np.isfinite(mass)):
    return np.full(len(mass), np.nan)
  counts = np.clip(mass * (used + len(mass) * smoothing) - smoothing, 0.0, None)
  return counts / counts.sum() / width if counts.sum() else np.zeros(len(mass))


def robust_range(edges, densities, *, coverage=0.99, margin=0.05):
  """(lo, hi) holding the central `coverage` of every set's mass, plus a margin.

  A few outliers (clipped into the end bins) then do not squeeze the bulk of the
  densities into a corner of the axis.
  """
  width = np.diff(edges)
  los, his = [], []
  for density in densities:
    if not np.all(np.isfinite(density)) or not density.sum():
      continue
    cdf = np.cumsum(density * width)
    cdf /= cdf[-1]
    tail = (1 - coverage) / 2
    los.append(edges[int(np.searchsorted(cdf, tail))])
    his.append(edges[int(np.searchsorted(cdf, 1 - tail)) + 1])
  if not los:
    return float(edges[0]), float(edges[-1])
  lo, hi = min(los), max(his)
  pad = margin * (hi - lo)
  return max(float(edges[0]), lo - pad), min(float(edges[-1]), hi + pad)


def plot_histograms(edges, mass, entry, path, *, title="", smoothing=0.0):
  """The densities of S+, S-, S!= on their shared bins; the three KLs beside the axes.

  Args:
    edges: the shared bin edges.
    mass: {set name: probability mass per bin, with `smoothing` pseudo-counts per bin}.
    entry: the step's discrepancy entry (KLs; pairs used per set).
    path: PNG to write.
    title: figure title.
    smoothing: the pseudo-counts per bin in `mass` (left out of the figure).
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 3.2))
  width = np.diff(edges)
  centers = edges[:-1] + width / 2
  used = {name: (entry.get("pairs") or {}).get(name, {}).get("used", 0) for name in mass}
  density = {name: histogram_density(mass[name], used[name], smoothing, width)
             for name in mass}
  for name in ("S!=", "S-", "S+"):
    ax.step(centers, density[name], where="mid", color=COLORS[name],
            label=f"{pretty(name)} ({used[name]:,} pairs)")
    ax.fill_between(centers, density[name], step="mid", color=COLORS[name], alpha=0.15)
  lo, hi = robust_range(edges, list(density.values()))
  ax.set_xlim(lo, hi)
  clipped = lo > edges[0] or hi < edges[-1]
  ax.set_xlabel(r"similarity $z_v^\top z_a$" + (" (central 99% of each set)" if clipped else ""))
  ax.set_ylabel("density")
  ax.set_ylim(bottom=0)
  # Legend and KLs outside the axes: they never cover a density.
  ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
  kl = "\n".join(f"{pretty(k)} = {v:.3f}" for k, v in entry["kl"].items())
  ax.text(1.03, 0.45, kl, transform=ax.transAxes, ha="left", va="top", fontsize=8)
  ax.set_title(title, fontsize=9)
  _save(fig, path)


def _mean_curve(series):
  """Mean and std over seeds at the steps all seeds share: (steps, mean, std)."""
  common = sorted(set.intersection(*(set(s) for s in series))) if series else []
  values = np.array([[s[x] for x in common] for s in series], np.float64)
  if not common:
    return np.array([]), np.array([]), np.array([])
  return np.array(common), values.mean(0), values.std(0)


def plot_divergence_curves(groups, path, *, title=""):
  """KL(S-||S+), KL(S!=||S+) and KL(S-||S!=) against training step (paper Figure 1).

  Args:
    groups: {label: step entries of discrepancy.json, or a list of them (one per seed:
      mean line, +-std band)}.
    path: PNG to write.
    title: figure title.
  """
  plt = _pyplot()
  names = [measures.kl_name(p, q) for p, q in measures.DIVERGENCES]
  fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3))
  for i, (label, seeds) in enumerate(groups.items()):
    seeds = [seeds] if seeds and isinstance(seeds[0], dict) else list(seeds)  # one run: one seed
    for ax, name in zip(axes, names):
      series = [{e["step"]: e["kl"][name] for e in entries} for entries in seeds]
      steps, mean, std = _mean_curve(series)
      ax.plot(steps, mean, marker="o", ms=3, color=f"C{i}", label=label or None)
      if len(seeds) > 1:
        ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.2)
  for ax, name in zip(axes, names):
    ax.set_title(pretty(name), fontsize=10)
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)
  if any(groups):
    axes[-1].legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  _save(fig, path)


# ---------------------------------------------------------------------------
# Training loss of several runs (Figure 3).


def read_losses(workdir):
  """{step: loss} of a run from its metrics.jsonl (a resumed run's later lines win)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no metrics.jsonl (is {workdir!r} a training workdir?)")
  out = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        m = json.loads(line)
        if "loss" in m:
          out[int(m["step"])] = float(m["loss"])
  return out


def _smooth(values, window):
  if window <= 1 or len(values) < window:
    return np.asarray(values, np.float64)
  kernel = np.ones(window) / window
  padded = np.concatenate([np.full(window - 1, values[0]), values])
  return np.convolve(padded, kernel, mode="valid")


def plot_losses(groups, path, *, title="self-supervised training loss", smooth=1):
  """Training loss against step, one line per label (mean over its runs, +-std band).

  Args:
    groups: {label: [run, ...]}, a run a workdir or its {step: loss} (several runs: seeds
      of one setting).
    path: PNG to write.
    title: figure title.
    smooth: moving-average window over logged steps.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 3.5))
  for i, (label, runs) in enumerate(groups.items()):
    steps, mean, std = _mean_curve([r if isinstance(r, dict) else read_losses(r) for r in runs])
    mean, std = _smooth(mean, smooth), _smooth(std, smooth)
    ax.plot(steps, mean, color=f"C{i}", label=label)
    if len(runs) > 1:
      ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.2)
  ax.set_xlabel("training step")
  ax.set_ylabel("NCE loss (Eq. 1)")
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  _save(fig, path)


def plot_bars(panels, path, *, title=""):
  """Grouped bars with error bars, one panel per measure group.

  Args:
    panels: {panel title: {bar group label: {bar label: (value, half-width)}}}; a NaN
      half-width draws no error bar. Bars come in pairs (a measure, then its reference,
      e.g. learned and random init): a pair shares a colour, the reference is hatched.
    path: PNG to write.
    title: figure title.
  """
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
  for ax, (panel, groups) in zip(axes[0], panels.items()):
    labels = list(groups)
    bars = list(dict.fromkeys(b for g in groups.values() for b in g))  # in first-seen order
    width = 0.8 / max(1, len(bars))
    for j, bar in enumerate(bars):
      values = [groups[g].get(bar, (np.nan, np.nan)) for g in labels]
      x = np.arange(len(labels)) + (j - (len(bars) - 1) / 2) * width
      err = [0 if not np.isfinite(h) else h for _, h in values]
      # Bars in pairs (learned, reference): one colour per pair, the second one hatched.
      ax.bar(x, [v for v, _ in values], width, yerr=err, capsize=3, label=bar,
             color=f"C{j // 2}", alpha=0.85 if j % 2 == 0 else 0.35,
             hatch="" if j % 2 == 0 else "//", edgecolor=f"C{j // 2}")
    ax.set_xticks(np.arange(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_title(panel, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  _save(fig, path)


def plot_differences(rows, path, *, title=""):
  """A forest plot: one row per comparison, its difference and interval.

  Args:
    rows: [(label, difference, lo, hi, significant)]; significant rows get a filled marker.
    path: PNG to write.
    title: figure title.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.2))
  y = np.arange(len(rows))[::-1]
  for yi, (label, diff, lo, hi, significant) in zip(y, rows):
    if not np.isfinite(diff):
      continue
    ax.plot([lo, hi], [yi, yi], color="C0", lw=2)
    ax.plot([diff], [yi], "o", ms=7, color="C0", mfc="C0" if significant else "white")
  ax.axvline(0, color="gray", lw=1, ls="--")
  ax.set_yticks(y)
  ax.set_yticklabels([r[0] for r in rows], fontsize=8)
  ax.set_xlabel("paired difference (points for probes)")
  ax.grid(axis="x", alpha=0.3)
  ax.set_title(title, fontsize=9)
  _save(fig, path)
