"""The hierarchical sampler (paper Section 3): invariants, uniformity, no snippet twice in a
batch, determinism, resume."""

import collections
import itertools
import math

import numpy as np
import pytest

from avjax.data.sampling import HierarchicalSampler
from helpers import chi2, chi2_bound




@pytest.mark.parametrize("k,w", [(4, None), (4, 8), (3, 3), (1, None), (16, 40)])
def test_group_invariants(k, w):
  counts = [50, 17, 80, 16, 33, 120]
  sampler = HierarchicalSampler(counts, k, w, seed=3)
  for p in range(3000):
    n, idx = sampler.group(p)
    assert isinstance(n, int) and 0 <= n < len(counts)
    assert idx.shape == (k,) and idx.dtype == np.int64
    assert len(set(idx.tolist())) == k, "indices must be distinct"
    assert np.all(np.diff(idx) > 0)
    assert 0 <= idx[0] and idx[-1] < counts[n]
    window = counts[n] if w is None else min(w, counts[n])
    assert k <= idx[-1] - idx[0] + 1 <= window


def test_titles_uniform():
  counts = [10, 20, 40, 80, 160, 320, 640, 1280]
  sampler = HierarchicalSampler(counts, 4, seed=0)
  draws = 16000
  freq = np.bincount([sampler.group(p)[0] for p in range(draws)], minlength=len(counts))
  assert chi2(freq, [draws / len(counts)] * len(counts)) < chi2_bound(len(counts) - 1)


def test_titles_by_length():
  counts = np.array([10, 20, 40, 80, 160])
  sampler = HierarchicalSampler(counts, 2, seed=1, title_weights="length")
  draws = 16000
  freq = np.bincount([sampler.group(p)[0] for p in range(draws)], minlength=len(counts))
  assert chi2(freq, draws * counts / counts.sum()) < chi2_bound(len(counts) - 1)


@pytest.mark.parametrize("m,k,w", [(9, 3, 5), (8, 4, 6), (7, 2, 3), (10, 3, None)])
def test_uniform_over_valid_sets(m, k, w):
  """Every k-subset of [0, M) with span <= w is equally likely (exact enumeration)."""
  valid = [c for c in itertools.combinations(range(m), k) if c[-1] - c[0] + 1 <= (w or m)]
  sampler = HierarchicalSampler([m], k, w, seed=5)
  draws = 200 * len(valid)
  counts = collections.Counter(tuple(sampler.group(p)[1].tolist()) for p in range(draws))
  assert set(counts) <= set(valid)
  assert chi2([counts[v] for v in valid], [200] * len(valid)) < chi2_bound(len(valid) - 1)


def test_span_distribution_long_title():
  """Spans follow (M - s + 1) C(s - 2, k - 2), the count of valid sets of each span."""
  m, k, w = 300, 5, 40
  sampler = HierarchicalSampler([m], k, w, seed=2)
  draws = 8000
  spans = np.array([np.ptp(sampler.group(p)[1]) + 1 for p in range(draws)])
  s = np.arange(k, w + 1)
  weights = np.array([(m - x + 1) * math.comb(x - 2, k - 2) for x in s], np.float64)
  expected = draws * weights / weights.sum()
  observed = np.array([(spans == x).sum() for x in s])
  keep = expected >= 5  # pool the sparse low-span tail, as chi-square needs
  obs = np.append(observed[keep], observed[~keep].sum())
  exp = np.append(expected[keep], expected[~keep].sum())
  assert chi2(obs, exp) < chi2_bound(len(obs) - 1)


def test_window_equal_k_gives_adjacent_snippets():
  sampler = HierarchicalSampler([30, 64, 9], 4, 4, seed=0)
  for p in range(2000):
    _, idx = sampler.group(p)
    np.testing.assert_array_equal(idx, np.arange(idx[0], idx[0] + 4))


def test_k1_is_iid_over_all_snippets():
  counts = [3, 10, 20]
  total = sum(counts)
  sampler = HierarchicalSampler(counts, 1, seed=4)  # title_weights ignored for k = 1
  draws = 300 * total
  offsets = np.cumsum([0] + counts[:-1])
  flat = [offsets[n] + idx[0] for n, idx in (sampler.group(p) for p in range(draws))]
  freq = np.bincount(flat, minlength=total)
  assert freq.min() > 0, "every snippet is drawn"
  assert chi2(freq, [draws / total] * total) < chi2_bound(total - 1)


def test_deterministic_and_exact_resume():
  counts = [40, 25, 60, 12, 30, 18]
  a = HierarchicalSampler(counts, 4, 10, seed=7, groups_per_batch=3)
  first = [a.batch(b) for b in range(20)]
  # A new sampler (a restart) draws batch b from the batch number alone, in any order.
  resumed = HierarchicalSampler(counts, 4, 10, seed=7, groups_per_batch=3)
  for b in (13, 5, 19, 0):
    assert all(x[0] == y[0] and np.array_equal(x[1], y[1])
               for x, y in zip(first[b], resumed.batch(b)))
  # Random access to a group is its place in its batch.
  n, idx = resumed.group(3 * 7 + 2)
  assert n == first[7][2][0] and np.array_equal(idx, first[7][2][1])
  other = HierarchicalSampler(counts, 4, 10, seed=8, groups_per_batch=3)
  assert any(other.batch(b)[0][0] != first[b][0][0] for b in range(10))


@pytest.mark.parametrize("k,w,weights", [(4, None, "uniform"), (2, 3, "length"),
                                         (16, None, "uniform"), (3, 3, "uniform")])
def test_no_title_twice_in_a_batch(k, w, weights):
  counts = [50, 17, 80, 16, 33, 120, 40, 19]
  sampler = HierarchicalSampler(counts, k, w, seed=1, title_weights=weights,
                                groups_per_batch=sampler_groups(counts, k))
  for b in range(400):
    titles = [n for n, _ in sampler.batch(b)]
    assert len(set(titles)) == len(titles) == sampler.groups_per_batch


def sampler_groups(counts, k):
  return sum(m >= k for m in counts)  # as many groups as titles can fill: the hardest case


def test_k1_batch_has_distinct_snippets():
  counts = [3, 10, 20, 1]
  sampler = HierarchicalSampler(counts, 1, seed=2, groups_per_batch=30)
  for b in range(300):
    snippets = [(n, int(idx[0])) for n, idx in sampler.batch(b)]
    assert len(set(snippets)) == 30


def test_batch_titles_follow_the_sequential_law():
  """Ordered titles of a batch: prod_j P(n_j) / (1 - sum_{i<j} P(n_i)) (exact enumeration)."""
  counts = np.array([4, 8, 16, 32])
  sampler = HierarchicalSampler(counts, 2, seed=3, title_weights="length", groups_per_batch=3)
  p = counts / counts.sum()
  orders = list(itertools.permutations(range(len(counts)), 3))
  law = np.array([p[a] * p[b] / (1 - p[a]) * p[c] / (1 - p[a] - p[b]) for a, b, c in orders])
  assert abs(law.sum() - 1) < 1e-12
  draws = 12000
  freq = collections.Counter(tuple(n for n, _ in sampler.batch(b)) for b in range(draws))
  assert set(freq) <= set(orders)
  assert chi2([freq[o] for o in orders], draws * law) < chi2_bound(len(orders) - 1)


def test_k1_batch_is_a_simple_random_sample():
  """Every 3-subset of the union's 6 snippets is equally likely (exact enumeration)."""
  counts = [2, 3, 1]
  sampler = HierarchicalSampler(counts, 1, seed=4, groups_per_batch=3)
  subsets = list(itertools.combinations([(n, m) for n, c in enumerate(counts)
                                         for m in range(c)], 3))
  draws = 200 * len(subsets)
  freq = collections.Counter(tuple(sorted((n, int(i[0])) for n, i in sampler.batch(b)))
                             for b in range(draws))
  assert set(freq) <= set(subsets)
  assert chi2([freq[x] for x in subsets], [200] * len(subsets)) < chi2_bound(
      len(subsets) - 1)


def test_bad_groups_are_redrawn_with_distinct_titles():
  counts = [100] * 6
  sampler = HierarchicalSampler(counts, 4, seed=0, groups_per_batch=4)
  plain = sampler.batch(9)
  marked = plain[1][0]
  redrawn = sampler.batch(9, bad=lambda n, idx: n == marked)
  assert redrawn[0][0] == plain[0][0] and np.array_equal(redrawn[0][1], plain[0][1])
  titles = [n for n, _ in redrawn]
  assert marked not in titles and len(set(titles)) == 4
  assert sampler.batch(9)[1][0] == marked  # the plain batch is unchanged


@pytest.mark.parametrize("counts,k,groups,match", [
    ([10, 20, 5], 8, 3, "needs 3 distinct titles with at least k snippets each"),
    ([2, 3], 1, 6, "batch of 6 snippets \\(k=1\\) cannot be filled"),
])
def test_a_batch_that_cannot_be_filled_is_refused(counts, k, groups, match):
  with pytest.raises(ValueError, match=match):
    HierarchicalSampler(counts, k, seed=0, groups_per_batch=groups)


def test_short_titles_dropped_and_counted():
  counts = [1, 5, 2, 8, 3]
  sampler = HierarchicalSampler(counts, 3, seed=0)
  assert sampler.num_dropped == 2
  assert sampler.titles.tolist() == [1, 3, 4]
  assert {sampler.group(p)[0] for p in range(500)} == {1, 3, 4}
  assert sampler.snippets_per_epoch == 16
  assert sampler.groups_per_epoch == 6  # ceil(16 / 3)


def test_window_capped_at_title_length():
  sampler = HierarchicalSampler([6, 100], 3, 50, seed=0)
  assert sampler.window(0) == 6 and sampler.window(1) == 50


@pytest.mark.parametrize("kwargs,match", [
    (dict(k=0), "k=0"),
    (dict(k=4, w=3), "w=3 < k=4"),
    (dict(k=2, title_weights="zipf"), "title_weights"),
    (dict(k=200), "no title has at least k=200"),
    (dict(k=2, seed=-1), "seed"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    HierarchicalSampler([10, 20], **kwargs)


def test_negative_counts_rejected():
  with pytest.raises(ValueError, match="counts must be >= 0"):
    HierarchicalSampler([10, -1], 2)


def test_large_titles_and_windows():
  """The span table stays finite for long titles and wide windows (no overflow)."""
  sampler = HierarchicalSampler([5000, 8000, 3000], 16, 2048, seed=0)
  for p in range(2000):
    _, idx = sampler.group(p)
    assert len(set(idx.tolist())) == 16 and idx[-1] - idx[0] + 1 <= 2048
