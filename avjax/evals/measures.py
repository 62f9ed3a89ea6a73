"""Discrepancy measures of paper Section 3 (Eq. 2): the pair sets S+, S-, S!= and their KLs.

For embeddings of snippets x_{n,m}, the audio-visual similarities s = (z_v^{n,m})^T
z_a^{n',m'} split into

  S+   same snippet              n = n', m = m'
  S-   same title, other snippet n = n', m != m'
  S!=  different titles          n != n'

Pairs are ordered (video of one snippet, audio of another). Every pair is used while a
set has at most `max_pairs` of them; a larger set is replaced by `max_pairs` pairs drawn
uniformly from it, with replacement, by a fixed seed (`sample_pairs`). The three densities
are histograms on shared bins: `bins` equal-width bins between the 0.1% and 99.9%
quantiles of all similarities pooled (values outside fall into the end bins), with
`smoothing` pseudo-counts added to every bin (0.5: the Krichevsky-Trofimov estimator),
which keeps every KL finite. Reported: KL(S-||S+), KL(S!=||S+), KL(S-||S!=) and the gap
KL(S!=||S+) - KL(S-||S+) (Section 3: under i.i.d. titles KL(S-||S!=) ~ 0 and the gap ~ 0;
k > 1 should shrink both). Pure numpy.
"""

import numpy as np

SETS = ("S+", "S-", "S!=")
# (p, q) of each KL(p || q) reported, in the paper's order.
DIVERGENCES = (("S-", "S+"), ("S!=", "S+"), ("S-", "S!="))


def kl_name(p, q):
  return f"KL({p}||{q})"


# ---------------------------------------------------------------------------
# Pairs (Eq. 2).


def pair_counts(title_index):
  """Number of ordered (video, audio) pairs in S+, S- and S!= for snippets of these titles."""
  _, m = np.unique(np.asarray(title_index), return_counts=True)
  m = m.astype(np.int64)
  total = int(m.sum())
  return {"S+": total, "S-": int((m * (m - 1)).sum()), "S!=": int(total * total - (m * m).sum())}


def all_pairs(title_index):
  """Every ordered pair (i, j) of rows, by set: {name: (i [P], j [P])}."""
  t = np.asarray(title_index)
  i, j = np.meshgrid(np.arange(len(t)), np.arange(len(t)), indexing="ij")
  i, j = i.ravel(), j.ravel()
  same_title, same_row = t[i] == t[j], i == j
  return {"S+": (i[same_row], j[same_row]),
          "S-": (i[same_title & ~same_row], j[same_title & ~same_row]),
          "S!=": (i[~same_title], j[~same_title])}


def sample_pairs(title_index, name, num, rng):
  """`num` ordered pairs drawn uniformly (with replacement) from set `name` without listing it.

  S-: a title with probability proportional to M_n (M_n - 1), then two distinct snippets of
  it. S!=: a row i with probability proportional to (M - M_{n(i)}), then a row j uniformly
  among the other titles' rows. Both are exactly uniform over the set's ordered pairs.
  """
  t = np.asarray(title_index)
  order = np.argsort(t, kind="stable")
  _, first, m = np.unique(t[order], return_index=True, return_counts=True)
  if name == "S+":
    i = rng.integers(len(t), size=num)
    return i, i
  if name == "S-":
    weights = (m * (m - 1)).astype(np.float64)
    n = rng.choice(len(m), size=num, p=weights / weights.sum())
    a = rng.integers(m[n])
    b = rng.integers(m[n] - 1)
    b = b + (b >= a)  # distinct from a
    return order[first[n] + a], order[first[n] + b]
  if name == "S!=":
    title_of_row = np.searchsorted(first, np.arange(len(t)), side="right") - 1  # in sorted order
    weights = (len(t) - m[title_of_row]).astype(np.float64)
    rows = rng.choice(len(t), size=num, p=weights / weights.sum())
    n = title_of_row[rows]
    # j uniform over sorted positions outside title n's block [first[n], first[n] + m[n]).
    r = rng.integers(len(t) - m[n])
    cols = np.where(r < first[n], r, r + m[n])
    return order[rows], order[cols]
  raise ValueError(f"unknown pair set {name!r}; expected one of {SETS}")


def make_pairs(title_index, *, max_pairs, seed=0):
  """{name: (i, j)} and {name: dict(total, used, sampled)} for S+, S-, S!=."""
  counts = pair_counts(title_index)
  rng = np.random.default_rng([int(seed), 0xD15C])
  everything = None
  pairs, info = {}, {}
  for name in SETS:
    if counts[name] <= max_pairs:
      if everything is None:
        everything = all_pairs(title_index)
      pairs[name] = everything[name]
    else:
      pairs[name] = sample_pairs(title_index, name, int(max_pairs), rng)
    info[name] = dict(total=counts[name], used=int(len(pairs[name][0])),
                      sampled=counts[name] > max_pairs)
  return pairs, info


def pair_similarities(z_video, z_audio, pairs, *, chunk=1 << 20):
  """s = z_v[i] . z_a[j] for each pair, float64."""
  i, j = pairs
  out = np.empty(len(i), np.float64)
  for s in range(0, len(i), chunk):
    a, b = z_video[i[s:s + chunk]], z_audio[j[s:s + chunk]]
    out[s:s + chunk] = np.einsum("pd,pd->p", a.astype(np.float64), b.astype(np.float64))
  return out


# ---------------------------------------------------------------------------
# Densities and divergences.


def shared_edges(samples, bins, quantile=0.0):
  """`bins` + 1 equal-width edges spanning the [q, 1 - q] quantiles of all samples pooled."""
  pooled = np.concatenate([np.asarray(s, np.float64).ravel() for s in samples])
  if not len(pooled):
    raise ValueError("no similarities to bin")
  lo, hi = np.quantile(pooled, [quantile, 1 - quantile]) if quantile else (pooled.min(),
                                                                            pooled.max())
  if not hi > lo:
    lo, hi = lo - 0.5, hi + 0.5
  return np.linspace(lo, hi, int(bins) + 1)


def histogram_mass(samples, edges, smoothing=0.5):
  """Probability mass per bin with `smoothing` pseudo-counts per bin; values outside the
  edges count in the end bins."""
  x = np.clip(np.asarray(samples, np.float64), edges[0], edges[-1])
  counts = np.histogram(x, bins=edges)[0].astype(np.float64) + smoothing
  return counts / counts.sum()


def kl_divergence(p, q):
  """KL(p || q) of two probability mass vectors on the same bins (0 log 0 = 0)."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  if p.shape != q.shape:
    raise ValueError(f"KL of masses on different bins: {p.shape} vs {q.shape}")
  live = p > 0
  if np.any(q[live] <= 0):
    return float("inf")
  return float(np.sum(p[live] * np.log(p[live] / q[live])))


def measures(similarities, *, bins=50, smoothing=0.5, quantile=0.001):
  """Divergences of Section 3 from the similarity samples of S+, S-, S!=.

  Returns (result dict, edges, {name: mass}); the result holds the three KLs, the gap
  KL(S!=||S+) - KL(S-||S+), and each set's mean and std.
  """
  # A set can be empty (one held-out title: no S!=; one snippet per title: no S-); its
  # divergences are then NaN.
  live = [n for n in SETS if len(similarities[n])]
  edges = shared_edges([similarities[n] for n in live], bins, quantile)
  mass = {n: histogram_mass(similarities[n], edges, smoothing) if n in live
          else np.full(len(edges) - 1, np.nan) for n in SETS}
  kl = {kl_name(p, q): kl_divergence(mass[p], mass[q]) if p in live and q in live
        else float("nan") for p, q in DIVERGENCES}
  stat = lambda fn, n: float(fn(similarities[n])) if n in live else float("nan")
  result = dict(
      kl=kl,
      gap=kl[kl_name("S!=", "S+")] - kl[kl_name("S-", "S+")],
      mean={n: stat(np.mean, n) for n in SETS},
      std={n: stat(np.std, n) for n in SETS},
  )
  return result, edges, mass
