"""How much of a measure is noise: permutation floors of the KLs, title bootstraps of S+ gaps.

Noise floor of a KL(P || Q) (paper Section 3 measures): the KL the same estimator
(avjax.evals.measures: shared bins, pseudo-counts) gives at the same sample sizes when P and
Q are one distribution: the pooled similarities are split at random into samples of |P|
and |Q|, `rounds` times. A measured KL inside that spread says nothing about the features.
Pairs share snippets, so they are not independent draws, and the floor is a lower bound on
the true sampling noise.

Confidence interval of mean S+ - mean S!= (and S+ - S-): a bootstrap over held-out titles,
the independent units. Each replicate draws the titles with replacement (multiplicities
w_n); a pair of S!= between titles a != b then counts w_a w_b times, a pair of S+ or S- of
title a counts w_a times (copies of one title are not made into S!= pairs), so each
replicate's means come from per-title sums without listing pairs again. Pure numpy.
"""

import numpy as np

from avjax.evals import measures as measures_lib


def kl_floors(similarities, edges, *, smoothing=0.5, rounds=20, seed=0):
  """{KL name: dict(mean, p95)} of each KL of measures.DIVERGENCES under the null.

  Only the smaller sample of each random split is drawn and binned; the larger one's
  counts are the pooled counts minus it, so a floor costs little even for 10^6 pairs.
  """
  rng = np.random.default_rng([int(seed), 0xF100])
  out = {}
  for p, q in measures_lib.DIVERGENCES:
    a, b = np.asarray(similarities[p]), np.asarray(similarities[q])
    name = measures_lib.kl_name(p, q)
    if not len(a) or not len(b):
      out[name] = dict(mean=float("nan"), p95=float("nan"))
      continue
    pooled = np.concatenate([a, b])
    total = measures_lib.histogram_counts(pooled, edges)
    small = min(len(a), len(b))
    values = []
    for _ in range(int(rounds)):
      part = measures_lib.histogram_counts(
          pooled[rng.choice(len(pooled), size=small, replace=False)], edges)
      rest = total - part
      count_a, count_b = (part, rest) if len(a) <= len(b) else (rest, part)
      values.append(measures_lib.kl_divergence(
          measures_lib.mass_from_counts(count_a, smoothing),
          measures_lib.mass_from_counts(count_b, smoothing)))
    out[name] = dict(mean=float(np.mean(values)), p95=float(np.percentile(values, 95)))
  return out


def _title_sums(pairs, sims, title_index, num_titles):
  """Per title pair (a, b): sum of similarities and number of pairs, [T, T] each."""
  i, j = pairs
  a, b = title_index[i], title_index[j]
  cell = a * num_titles + b
  size = num_titles * num_titles
  total = np.bincount(cell, weights=sims, minlength=size).reshape(num_titles, num_titles)
  count = np.bincount(cell, minlength=size).astype(np.float64).reshape(num_titles, num_titles)
  return total, count


def _weighted_means(total, count, weights, within):
  """Mean similarity per bootstrap replicate, weights [R, T]: (w . diag S) / (w . diag C)
  for a set within titles (S+, S-), (w^T S w) / (w^T C w) across titles (S!=)."""
  if within:
    num, den = weights @ np.diag(total), weights @ np.diag(count)
  else:
    num = np.einsum("ra,ab,rb->r", weights, total, weights)
    den = np.einsum("ra,ab,rb->r", weights, count, weights)
  with np.errstate(invalid="ignore", divide="ignore"):
    return num / den


def gap_intervals(similarities, pairs, title_index, *, rounds=1000, level=0.95, seed=0):
  """Mean S+ - mean S!= and mean S+ - mean S-, each with a title-bootstrap interval.

  Args:
    similarities: {set name: similarities [P]} (as measures.measures takes).
    pairs: {set name: (i [P], j [P])} rows of the embedded snippets.
    title_index: title of each row.
  Returns:
    {"S+ - S!=": dict(diff, lo, hi), "S+ - S-": ...}, with `level` central intervals over
    `rounds` replicates (NaN where a set is empty), plus "titles" and "rounds".
  """
  _, title_index = np.unique(np.asarray(title_index), return_inverse=True)
  num_titles = int(title_index.max()) + 1
  rng = np.random.default_rng([int(seed), 0xB007])
  draws = rng.integers(num_titles, size=(int(rounds), num_titles))
  weights = np.stack([np.bincount(d, minlength=num_titles) for d in draws]).astype(np.float64)
  ones = np.ones((1, num_titles))
  sums = {n: _title_sums(pairs[n], np.asarray(similarities[n], np.float64), title_index,
                         num_titles) for n in measures_lib.SETS}
  out = dict(titles=num_titles, rounds=int(rounds), level=float(level))
  tail = 100 * (1 - level) / 2
  for other in ("S!=", "S-"):
    name = f"S+ - {other}"
    if not len(similarities[other]) or not len(similarities["S+"]):
      out[name] = dict(diff=float("nan"), lo=float("nan"), hi=float("nan"))
      continue
    within = other == "S-"
    point = (_weighted_means(*sums["S+"], ones, True)
             - _weighted_means(*sums[other], ones, within))[0]
    boot = (_weighted_means(*sums["S+"], weights, True)
            - _weighted_means(*sums[other], weights, within))
    boot = boot[np.isfinite(boot)]  # a replicate can miss every pair of a set
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    out[name] = dict(diff=float(point), lo=float(lo), hi=float(hi))
  return out


def separated(interval):
  """True when an interval dict(diff, lo, hi) lies wholly above zero."""
  return bool(np.isfinite(interval["lo"]) and interval["lo"] > 0)
