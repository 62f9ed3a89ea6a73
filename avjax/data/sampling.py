"""The hierarchical sampling policy of paper Section 3: a title, then k snippets of it.

A group is drawn in two stages. First a title n (uniformly, n ~ U(1, N), as in the paper; or
proportionally to its length M_n). Then a set of k distinct snippet indices of that title,
uniformly over all k-subsets of [0, M_n) whose span max - min + 1 is at most the window w
(k <= max - min + 1 <= w <= M_n). w = M_n imposes no temporal constraint; w = k makes the
k snippets temporally adjacent.

No snippet twice in a batch. A global batch holds G = B / k groups, and its titles are
distinct: the batch's groups are drawn in turn, and group j's title is drawn from the
first-stage law conditioned on not being one of the titles of groups 0..j-1 (rejection:
draws of a title already in the batch are thrown away). A repeated snippet would be its own
negative in Eq. 1 (a false negative the loss pushes apart), and with distinct titles every
element of a batch sees exactly 2k - 2 negative pairs from its own title (Section 3). Given
its title, a group's snippets follow the second stage above, independently of the rest.
The law of a batch's ordered titles is therefore prod_j P(n_j) / (1 - sum_{i<j} P(n_i)).

k = 1 is the paper's baseline: snippets drawn uniformly from the union of all titles. A
k = 1 batch is a simple random sample of B distinct snippets of that union (every B-subset
equally likely, in uniformly random order), whatever `title_weights` says.

A batch that cannot be filled without repeats (fewer than G titles with M_n >= k, or
k = 1 and fewer than B snippets in all) is refused when the sampler is made, before step 1.

The stream is a pure function of (seed, batch): group j of batch b is drawn with its own
generator seeded by (seed, b, j), after the groups before it. Resuming is exact from the
batch number alone, any batch can be drawn out of order (`batch(b)`), and hosts each draw
the whole (cheap) list of a batch's groups and read only their share, so that together
they reproduce the single-host stream. `groups_per_batch=1` makes every group a batch of
its own: groups are then i.i.d. draws of the two-stage law (the law before batches kept
titles distinct).
"""

import math

import numpy as np
from absl import logging


TITLE_WEIGHTS = ("uniform", "length")


class TooFewSnippetsError(ValueError):
  """The titles cannot give a batch of distinct snippets: no title has k of them, or fewer
  titles than a batch has groups do."""


class BadGroupsError(ValueError):
  """A batch whose groups cannot avoid the records marked bad."""


def _as_int(value, name):
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {value!r}")
  return int(value)


def _span_table(k, top):
  """Cumulative sums of c(s) and s c(s) over spans s = k .. top, for windowed draws.

  c(s) = C(s - 2, k - 2) is the number of ways to fill the interior of a span of s with
  k - 2 snippets (see HierarchicalSampler._span); kept relative to its largest value so
  that large k and w do not overflow.
  """
  s = np.arange(k, top + 1, dtype=np.float64)
  # log C(s-2, k-2) by the ratio C(s-1, k-2) / C(s-2, k-2) = (s-1) / (s-k+1).
  log_c = np.concatenate([[0.0], np.cumsum(np.log((s[:-1] - 1) / (s[:-1] - k + 1)))])
  c = np.exp(log_c - log_c[-1])
  return np.cumsum(c), np.cumsum(s * c)


class HierarchicalSampler:
  """Draws batches of groups (title_index, snippet_indices) of the hierarchical policy.

  Args:
    counts: M_n, the number of snippets of each title n.
    k: snippets per group, >= 1.
    w: sampling window in snippets, >= k; None (or -1) means w = M_n for every title. A
      title shorter than w uses its whole length (w is capped at M_n, as w <= M_n).
    seed: non-negative int; the stream is a pure function of (seed, batch).
    title_weights: "uniform" (paper) or "length" (n drawn proportionally to M_n). Ignored
      for k = 1, which is the i.i.d. baseline over all snippets.
    groups_per_batch: G = B / k, the groups of one global batch, whose titles (k = 1: whose
      snippets) are distinct.

  Titles with M_n < k cannot give k distinct snippets: they are left out (with a warning
  that counts them, `num_dropped`) and never drawn; title indices still refer to `counts`.
  """

  def __init__(self, counts, k, w=None, seed=0, title_weights="uniform", groups_per_batch=1):
    counts = np.asarray(counts)
    if counts.ndim != 1 or not (counts.size == 0 or np.issubdtype(counts.dtype, np.integer)):
      raise ValueError(f"counts must be a 1-D sequence of ints (M_n per title), got "
                       f"{counts.dtype} {counts.shape}")
    if counts.size and counts.min() < 0:
      raise ValueError(f"counts must be >= 0, got {int(counts.min())} for title "
                       f"{int(counts.argmin())}")
    self.counts = counts.astype(np.int64)
    self.k = _as_int(k, "k")
    if self.k < 1:
      raise ValueError(f"k={self.k}: need k >= 1 snippets per title (Section 3)")
    w = None if w is None or _as_int(w, "w") == -1 else int(w)
    if w is not None and w < self.k:
      raise ValueError(f"w={w} < k={self.k}: a window of w snippets cannot hold k distinct "
                       "ones (Section 3: k <= max - min + 1 <= w <= M_n); use w >= k, or "
                       "-1 for w = M_n")
    self.w = w
    self.seed = _as_int(seed, "seed")
    if self.seed < 0:
      raise ValueError(f"seed={self.seed}: must be >= 0")
    if title_weights not in TITLE_WEIGHTS:
      raise ValueError(f"title_weights={title_weights!r}: expected one of {TITLE_WEIGHTS}")
    self.title_weights = title_weights
    self.groups_per_batch = _as_int(groups_per_batch, "groups_per_batch")
    if self.groups_per_batch < 1:
      raise ValueError(f"groups_per_batch={self.groups_per_batch}: must be >= 1")

    keep = self.counts >= self.k
    self.titles = np.flatnonzero(keep)  # original indices of the titles that are drawn
    self.num_dropped = int((~keep).sum())
    if self.num_dropped:
      logging.warning("sampler: left out %d of %d titles with fewer than k=%d snippets",
                      self.num_dropped, len(self.counts), self.k)
    if not len(self.titles):
      raise TooFewSnippetsError(f"no title has at least k={self.k} snippets ({len(self.counts)} "
                       f"titles, the longest has {int(self.counts.max(initial=0))}); use a "
                       "smaller k or longer titles")
    kept = self.counts[self.titles]
    self.snippets_per_epoch = int(kept.sum())
    self._check_batch_fits()

    # Title draw: uniform (paper), or by length; k = 1 draws snippets from the union.
    self._title_cdf = None
    if self.title_weights == "length":
      self._title_cdf = np.cumsum(kept, dtype=np.float64) / kept.sum()
    self._flat_offsets = np.cumsum(kept) - kept  # k = 1: first flat index of each title

    self._span_ca = self._span_cb = None
    if self.k >= 2 and self.w is not None:
      self._span_ca, self._span_cb = _span_table(self.k, int(min(self.w, kept.max())))
    self._cache = (None, None)  # the last batch drawn: (batch, groups)

  def _check_batch_fits(self):
    g, k = self.groups_per_batch, self.k
    if k == 1 and g > self.snippets_per_epoch:
      raise TooFewSnippetsError(f"a batch of {g} snippets (k=1) cannot be filled without repeating "
                       f"one: the titles hold {self.snippets_per_epoch} snippets in all; use a "
                       "batch size of at most that, or more data")
    if k > 1 and g > len(self.titles):
      raise TooFewSnippetsError(f"a batch of {g} groups of k={k} snippets needs {g} distinct titles "
                       f"with at least k snippets each (no snippet twice in a batch), and "
                       f"only {len(self.titles)} of {len(self.counts)} titles have them; use "
                       f"a batch size of at most {len(self.titles) * k}, a smaller k, or "
                       "more titles")

  # -------------------------------------------------------------------------
  @property
  def num_titles(self):
    """Titles that are drawn (those with M_n >= k)."""
    return len(self.titles)

  @property
  def groups_per_epoch(self):
    """Groups in one epoch of sum_n M_n snippets (rounded up)."""
    return math.ceil(self.snippets_per_epoch / self.k)

  def window(self, title_index):
    """The window w_n = min(w, M_n) used for a title."""
    m = int(self.counts[title_index])
    return m if self.w is None else min(self.w, m)

  def group(self, position):
    """Group `position` of the stream (batch position // G, slot position % G):
    (title_index, sorted int64 snippet indices)."""
    position = _as_int(position, "position")
    if position < 0:
      raise ValueError(f"position={position}: must be >= 0")
    return self.batch(position // self.groups_per_batch)[position % self.groups_per_batch]

  def batch(self, index, bad=None):
    """The G groups of global batch `index`: a list of (title_index, snippet indices).

    `bad(title_index, snippet_indices) -> bool` marks groups to replace (the input pipeline
    passes the records it skips): such a group is drawn again (redraw r = 1, 2, ... with
    its own generator) under the same rule, distinct from the batch's other titles.
    """
    index = _as_int(index, "batch")
    if index < 0:
      raise ValueError(f"batch={index}: must be >= 0")
    cached = self._cache  # one read: the pipeline's thread and the main thread share it
    if bad is None and cached[0] == index:
      return list(cached[1])
    groups, used = [], set()
    for j in range(self.groups_per_batch):
      for redraw in range(1000):
        key = [self.seed, index, j] + ([redraw] if redraw else [])
        group = self._draw(np.random.default_rng(key), used)
        if bad is None or not bad(*group):
          break
      else:
        raise BadGroupsError(f"batch {index}, group {j}: 1000 draws all hold a bad record; "
                             f"too few good titles to fill a batch of {self.groups_per_batch} "
                             f"groups with distinct titles")
      groups.append(group)
      used.add(group[0] if self.k > 1 else (group[0], int(group[1][0])))
    if bad is None:
      self._cache = (index, groups)
    return list(groups)

  def _draw(self, rng, used):
    """One group, distinct from the titles (k = 1: the snippets) in `used`."""
    while True:
      if self.k == 1:  # a uniform snippet of the union; its title and index
        flat = int(rng.integers(self.snippets_per_epoch))
        i = int(np.searchsorted(self._flat_offsets, flat, side="right")) - 1
        n, m = int(self.titles[i]), flat - int(self._flat_offsets[i])
        if (n, m) not in used:
          return n, np.array([m], np.int64)
      else:
        n = self.draw_title(rng)
        if n not in used:
          return n, self._snippets(rng, n)

  def draw_title(self, rng):
    """The first stage: a title index, uniformly or by length (see the class docstring)."""
    if self._title_cdf is None:
      return int(self.titles[rng.integers(len(self.titles))])
    i = int(np.searchsorted(self._title_cdf, rng.random(), side="right"))
    return int(self.titles[min(i, len(self.titles) - 1)])

  def title_probabilities(self):
    """P(n) of each drawn title in the first stage (aligned with `titles`); k = 1 draws
    snippets, so its titles come by length."""
    if self.k == 1:
      kept = self.counts[self.titles]
      return kept / kept.sum()
    if self._title_cdf is None:
      return np.full(len(self.titles), 1 / len(self.titles))
    return np.diff(self._title_cdf, prepend=0.0)

  def _snippets(self, rng, n):
    """k distinct indices of title n, uniform over the k-subsets with span <= w_n."""
    m, k = int(self.counts[n]), self.k
    w = self.window(n)
    if w >= m:  # no temporal constraint: every k-subset of [0, M_n) qualifies.
      return np.sort(rng.choice(m, size=k, replace=False)).astype(np.int64)
    s = self._span(rng, m, w)
    # Given its span s, a valid set is a first index a in [0, M_n - s], the last a + s - 1,
    # and k - 2 of the s - 2 indices between them; each such set is equally likely.
    a = int(rng.integers(m - s + 1))
    inner = rng.choice(s - 2, size=k - 2, replace=False) + a + 1
    return np.sort(np.concatenate([[a], inner, [a + s - 1]])).astype(np.int64)

  def _span(self, rng, m, w):
    """Draws the span s = max - min + 1 in [k, w] of a uniform valid set of a title of m.

    The number of k-subsets of [0, m) with span exactly s is (m - s + 1) C(s - 2, k - 2):
    the first index has m - s + 1 places and the k - 2 inner ones fill s - 2 slots. Its
    cumulative sum over s is (m + 1) * sum c(s) - sum s c(s), both tabulated once for all
    titles, so a draw costs one pass over at most w entries.
    """
    n = w - self.k + 1
    cdf = (m + 1) * self._span_ca[:n] - self._span_cb[:n]
    i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return self.k + min(i, n - 1)
