"""The statistics of a study: paired differences over seeds, Holm's correction, sample size.

Two settings run with the same seed share the initialisation and the probe's snippets, so
their measures are compared seed by seed: the paired difference d_s = a_s - b_s, its mean
with a t interval, and a two-sided paired t test. A family of such tests is controlled with
Holm's step-down correction. Pure numpy/scipy.
"""

import numpy as np
from scipy import stats


def mean_ci(values, level=0.95):
  """(mean, half-width of the t interval, n) of the finite values."""
  values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
  if not len(values):
    return float("nan"), float("nan"), 0
  if len(values) == 1:
    return float(values[0]), float("nan"), 1
  half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
  return float(values.mean()), float(half), len(values)


def paired(a, b, level=0.95):
  """The paired comparison of two settings' values, each {seed: value}.

  Returns dict(n, diff (mean of a_s - b_s), lo, hi (its t interval), sd, t, p (two-sided
  paired t test), r (the seed-to-seed correlation of a and b), mean_a, mean_b), over the
  seeds where both are finite; NaN where fewer than two, and t and p NaN where the
  differences are all equal and not zero.
  """
  seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None
                 and np.isfinite(a[s]) and np.isfinite(b[s]))
  x = np.asarray([a[s] for s in seeds], np.float64)
  y = np.asarray([b[s] for s in seeds], np.float64)
  out = dict(n=len(seeds), seeds=seeds, diff=float("nan"), lo=float("nan"), hi=float("nan"),
             sd=float("nan"), t=float("nan"), p=float("nan"), r=float("nan"),
             mean_a=float(x.mean()) if len(x) else float("nan"),
             mean_b=float(y.mean()) if len(y) else float("nan"))
  if len(seeds) < 2:
    return out
  d = x - y
  mean, half, _ = mean_ci(d, level)
  sd = float(d.std(ddof=1))
  out.update(diff=mean, lo=mean - half, hi=mean + half, sd=sd)
  if sd > 0:
    out["t"] = float(mean / (sd / np.sqrt(len(d))))
    out["p"] = float(2 * stats.t.sf(abs(out["t"]), len(d) - 1))
  elif mean == 0:  # every difference zero
    out["t"], out["p"] = 0.0, 1.0
  # Identical non-zero differences (e.g. top-1 on a small test set, which moves in steps)
  # give the test no spread to measure its error by: not tested (p NaN), not "p = 0".
  if x.std() > 0 and y.std() > 0:
    out["r"] = float(np.corrcoef(x, y)[0, 1])
  return out


def holm(p_values, alpha=0.05):
  """Holm's step-down correction of a family of tests.

  Returns (adjusted p-values, rejected), both in the order given: the i-th smallest p is
  multiplied by (m - i), adjusted values are made monotone, and a hypothesis is rejected
  when its adjusted p is at most alpha (the family-wise error rate). NaN p-values are not
  tested (adjusted NaN, not rejected) and do not count in m.
  """
  p = np.asarray(p_values, np.float64)
  live = np.flatnonzero(np.isfinite(p))
  adjusted = np.full(len(p), np.nan)
  m = len(live)
  running = 0.0
  for rank, i in enumerate(live[np.argsort(p[live], kind="stable")]):
    running = max(running, min(1.0, (m - rank) * p[i]))
    adjusted[i] = running
  return adjusted.tolist(), [bool(np.isfinite(a) and a <= alpha) for a in adjusted]


def holm_family(tests, alpha=0.05):
  """The test dicts of one family (each with its "p"), with Holm's p_holm and reject."""
  adjusted, rejected = holm([t["p"] for t in tests], alpha)
  return [dict(t, p_holm=p, reject=r) for t, p, r in zip(tests, adjusted, rejected)]


def decision(test):
  """A test's decision as the reports write it: significant (after its family's
  correction), not significant, or not tested (no p: too few seeds, or no spread)."""
  if test.get("reject"):
    return "**significant**"
  p = test.get("p")
  return "not tested" if p is None or not np.isfinite(p) else "not significant"


def paired_power(n, effect, sd, alpha=0.05):
  """Power of a two-sided paired t test over n seeds for a true mean difference `effect`
  when the differences have standard deviation `sd` (noncentral t)."""
  df = n - 1
  nc = effect / (sd / np.sqrt(n))
  crit = stats.t.ppf(1 - alpha / 2, df)
  return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_for_power(effect, sd, power=0.8, alpha=0.05, most=1000):
  """The smallest number of seeds whose paired t test has `power` for `effect`."""
  for n in range(2, most + 1):
    if paired_power(n, effect, sd, alpha) >= power:
      return n
  raise ValueError(f"more than {most} seeds needed for effect {effect} at sd {sd}")
