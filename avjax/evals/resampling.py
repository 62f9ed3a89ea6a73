"""How much of a measure is noise: permutation floors of the KLs, title bootstraps of S+ gaps.

Noise floor of a KL(P || Q) (paper Section 3 measures): the KL the same estimator
(avjax.evals.measures: shared bins, pseudo-counts) gives when the structure that tells P
from Q is broken by permuting snippets, the units the pairs are made of (pairs share
snippets and cluster by title, so permuting pairs one by one would make the null too
narrow):
  KL(S- || S+)   each title's audio embeddings permuted among its own snippets: video and
                 audio still come from the same title, their correspondence is random;
  KL(S!= || S+)  the audio embeddings permuted over all snippets: correspondence and title
                 both random;
  KL(S- || S!=)  the snippets' title labels permuted (title sizes kept): "same title" no
                 longer means anything, every other property of the embedding stays.
Each null keeps the sets' sizes and the pairs' sampling (`max_pairs`). The floor is the null's
95th percentile over `rounds` permutations; a measured KL inside that spread says nothing
about the features.

Confidence interval of mean S+ - mean S!= (and S+ - S-): a bootstrap over held-out titles,
the independent units. Each replicate draws the titles with replacement (multiplicities
w_n); a pair of S!= between titles a != b then counts w_a w_b times, a pair of S+ or S- of
title a counts w_a times (copies of one title are not made into S!= pairs), so each
replicate's means come from per-title sums without listing pairs again. Pure numpy.
"""

import numpy as np

from avjax.evals import measures as measures_lib


def kl_floors(z_video, z_audio, title_index, pairs, edges, *, max_pairs, smoothing=0.5,
              rounds=20, seed=0):
  """{KL name: dict(mean, p95)} of each KL of measures.DIVERGENCES under its null (above).

  Args:
    z_video, z_audio: the embeddings [S, d] of the held-out snippets.
    title_index: title of each snippet [S].
    pairs: the observed {set name: (i, j)} (measures.make_pairs), reused where the null
      permutes embeddings only.
    edges: the observed measure's shared bin edges.
  """
  title_index = np.asarray(title_index)
  rng = np.random.default_rng([int(seed), 0xF100])
  within = [np.flatnonzero(title_index == n) for n in np.unique(title_index)]

  def kl(sims, p, q):
    if not len(sims[p]) or not len(sims[q]):
      return float("nan")
    return measures_lib.kl_divergence(
        *(measures_lib.histogram_mass(sims[x], edges, smoothing) for x in (p, q)))

  values = {measures_lib.kl_name(p, q): [] for p, q in measures_lib.DIVERGENCES}
  for r in range(int(rounds)):
    in_title = np.arange(len(title_index))
    for rows in within:
      in_title[rows] = rng.permutation(rows)
    anywhere = rng.permutation(len(title_index))
    for p, q in (("S-", "S+"), ("S!=", "S+")):
      audio = z_audio[in_title if p == "S-" else anywhere]
      sims = {n: measures_lib.pair_similarities(z_video, audio, pairs[n]) for n in (p, q)}
      values[measures_lib.kl_name(p, q)].append(kl(sims, p, q))
    shuffled, _ = measures_lib.make_pairs(rng.permutation(title_index), max_pairs=max_pairs,
                                          seed=int(seed) + r + 1)
    sims = {n: measures_lib.pair_similarities(z_video, z_audio, shuffled[n])
            for n in ("S-", "S!=")}
    values[measures_lib.kl_name("S-", "S!=")].append(kl(sims, "S-", "S!="))
  return {name: dict(mean=float(np.mean(v)), p95=float(np.percentile(v, 95)))
          if v and np.all(np.isfinite(v)) else dict(mean=float("nan"), p95=float("nan"))
          for name, v in values.items()}


def _title_sums(pairs, sims, title_index, num_titles):
  """Per title pair (a, b): sum of similarities and number of pairs, [T, T] each."""
  i, j = pairs
  cell = title_index[i] * num_titles + title_index[j]
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
