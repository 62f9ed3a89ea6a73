"""The hierarchical sampler (paper Section 3): invariants, uniformity, determinism, resume."""

import collections
import itertools
import math
import time

import numpy as np
import pytest

from avjax.data.sampling import HierarchicalSampler
from helpers import chi2, chi2_bound


@pytest.mark.parametrize("k,w", [(4, None), (4, 8), (3, 3), (1, None), (16, 40)])
def test_group_invariants(k, w):
  counts = [50, 17, 80, 16, 33, 120]
  sampler = HierarchicalSampler(counts, k, w, seed=3)
  for position in range(3000):
    n, idx = sampler.group(position)
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
  counts = [40, 25, 60, 12]
  a = HierarchicalSampler(counts, 4, 10, seed=7)
  first = [a.group(p) for p in range(80)]
  # A sampler made afresh (a restarted run) draws the same groups at every position, in
  # any order: resuming needs the position alone.
  resumed = HierarchicalSampler(counts, 4, 10, seed=7)
  for p in [50 + i for i in range(30)] + [17, 3]:
    n, idx = resumed.group(p)
    assert n == first[p][0] and np.array_equal(idx, first[p][1])
  # Another seed gives another stream.
  other = HierarchicalSampler(counts, 4, 10, seed=8)
  assert any(not np.array_equal(other.group(p)[1], first[p][1]) for p in range(10))


def test_redraw_is_another_draw_for_the_same_position():
  sampler = HierarchicalSampler([100] * 5, 4, seed=0)
  draws = {(sampler.group(3, r)[0], tuple(sampler.group(3, r)[1])) for r in range(5)}
  assert len(draws) > 1
  assert sampler.group(3, 0)[0] == sampler.group(3)[0]


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


def test_large_titles_and_windows_are_fast():
  sampler = HierarchicalSampler([5000, 8000, 3000], 16, 2048, seed=0)
  t0 = time.perf_counter()
  for p in range(2000):
    _, idx = sampler.group(p)
    assert idx[-1] - idx[0] + 1 <= 2048
  assert time.perf_counter() - t0 < 5.0
