"""Scene-aware sampling (data/scene_sampling.py): invariants, each policy's law against exact
enumeration on small titles, the fallback, exact resume, and the config checks."""

import collections
import itertools
import math

import ml_collections
import numpy as np
import pytest

from avjax.data import sampling
from avjax.data.scene_sampling import SceneSampler, make_sampler
from helpers import chi2, chi2_bound

# Scene ids per snippet of small titles: scenes of 1-4 snippets.
TITLE_A = [0, 0, 1, 2, 2, 2, 3, 4, 4, 5]  # 6 scenes, M = 10
TITLE_B = [0, 0, 0, 1, 1, 2, 2, 2, 2]  # 3 scenes, M = 9


def _scene_sets(ids):
  starts = {}
  for i, s in enumerate(ids):
    starts.setdefault(s, []).append(i)
  return [starts[s] for s in sorted(starts)]


def _law(ids, k, policy):
  """Exact P(set | title) of a policy, by enumerating every k-subset of the title."""
  scenes = _scene_sets(ids)
  size = {i: len(sc) for sc in scenes for i in sc}
  scene_of = {i: j for j, sc in enumerate(scenes) for i in sc}
  m, s = len(ids), len(scenes)
  law = {}
  for subset in itertools.combinations(range(m), k):
    hit = [scene_of[i] for i in subset]
    if s < k:  # fallback: every scene met, the rest uniform over the other snippets
      if len(set(hit)) < s:
        continue
      p = math.prod(hit.count(j) / len(scenes[j]) for j in range(s)) / math.comb(m - s, k - s)
    else:
      if len(set(hit)) < k:
        continue
      per_snippet = math.prod(1 / size[i] for i in subset)
      if policy == "distinct":
        p = per_snippet / math.comb(s, k)
      else:  # adaptive: the scenes must be a run of k consecutive ones
        if max(hit) - min(hit) != k - 1:
          continue
        p = per_snippet / (s - k + 1)
    law[subset] = p
  assert math.isclose(sum(law.values()), 1.0), "the law sums to 1 over the valid sets"
  return law


@pytest.mark.parametrize("policy", ["distinct", "adaptive"])
@pytest.mark.parametrize("ids,k", [(TITLE_A, 3), (TITLE_A, 4), (TITLE_B, 4), (TITLE_B, 5)])
def test_law_matches_enumeration(policy, ids, k):
  """Draw frequencies match the docstring's law on every valid set (chi-square)."""
  law = _law(ids, k, policy)
  sampler = SceneSampler([ids], k, policy, seed=11)
  draws = max(20_000, 50 * len(law))
  counts = collections.Counter(tuple(sampler.group(p)[1].tolist()) for p in range(draws))
  assert set(counts) <= set(law), "every draw is a valid set of the policy"
  keys = sorted(law)
  expected = np.array([draws * law[key] for key in keys])
  observed = np.array([counts[key] for key in keys])
  keep = expected >= 5  # pool sparse cells, as chi-square needs
  obs, exp = observed[keep], expected[keep]
  if not keep.all():
    obs, exp = np.append(obs, observed[~keep].sum()), np.append(exp, expected[~keep].sum())
  assert chi2(obs, exp) < chi2_bound(len(obs) - 1)


@pytest.mark.parametrize("policy", ["distinct", "adaptive"])
def test_groups_are_in_one_title_and_from_distinct_scenes(policy):
  rng = np.random.default_rng(0)
  titles = [np.sort(rng.integers(0, s, size=m)).tolist()
            for s, m in ((20, 60), (40, 200), (18, 30), (25, 25))]
  titles = [np.unique(t, return_inverse=True)[1].tolist() for t in titles]  # dense ids
  sampler = SceneSampler(titles, 16, policy, seed=3)
  for p in range(2000):
    n, idx = sampler.group(p)
    assert idx.shape == (16,) and idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    assert 0 <= idx[0] and idx[-1] < len(titles[n])
    scenes = [titles[n][i] for i in idx]
    assert len(set(scenes)) == 16, "16 snippets from 16 different scenes"
    if policy == "adaptive":
      assert max(scenes) - min(scenes) == 15, "a run of 16 consecutive scenes"


def test_fallback_meets_every_scene_and_rate_is_reported():
  short = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2]  # 3 scenes < k = 5
  long = list(range(8))  # 8 scenes
  sampler = SceneSampler([short, long], 5, "distinct", seed=0)
  assert sampler.fallback_rate == pytest.approx(0.5)  # titles drawn uniformly
  by_length = SceneSampler([short, long], 5, "distinct", title_weights="length")
  assert by_length.fallback_rate == pytest.approx(12 / 20)
  for p in range(500):
    n, idx = sampler.group(p)
    if n == 0:
      assert {short[i] for i in idx} == {0, 1, 2}
      assert len(set(idx.tolist())) == 5
  assert SceneSampler([long], 5, "adaptive").fallback_rate == 0.0


def test_deterministic_and_exact_resume():
  ids = [TITLE_A, TITLE_B, list(range(12))]
  for policy in ("distinct", "adaptive"):
    a = SceneSampler(ids, 3, policy, seed=7, groups_per_batch=2)
    first = [a.batch(b) for b in range(20)]
    resumed = SceneSampler(ids, 3, policy, seed=7, groups_per_batch=2)  # a restart
    for b in (11, 3, 19):
      assert all(x[0] == y[0] and np.array_equal(x[1], y[1])
                 for x, y in zip(first[b], resumed.batch(b)))
    n, idx = resumed.group(2 * 8 + 1)
    assert n == first[8][1][0] and np.array_equal(idx, first[8][1][1])
    assert all(g[0][0] != g[1][0] for g in first)  # distinct titles in a batch
    redrawn = a.batch(5, bad=lambda n, idx: n == first[5][0][0])
    assert first[5][0][0] not in [n for n, _ in redrawn]


def test_titles_drawn_as_the_scene_blind_sampler_draws_them():
  ids = [TITLE_A, TITLE_B, list(range(12))]
  blind = sampling.HierarchicalSampler([len(t) for t in ids], 3, seed=4, groups_per_batch=2)
  scene = SceneSampler(ids, 3, "distinct", seed=4, groups_per_batch=2)
  assert [blind.group(p)[0] for p in range(300)] == [scene.group(p)[0] for p in range(300)]


def test_short_titles_left_out():
  sampler = SceneSampler([[0, 1], TITLE_A], 3, "distinct")
  assert sampler.num_titles == 1 and all(sampler.group(p)[0] == 1 for p in range(50))


@pytest.mark.parametrize("kwargs,match", [
    (dict(k=1, policy="distinct"), "k >= 2"),
    (dict(k=3, policy="nearby"), "one of"),
    (dict(k=3, policy="distinct", seed=-1), "seed"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises((ValueError, TypeError), match=match):
    SceneSampler([TITLE_A], **kwargs)


def test_scene_ids_must_be_runs():
  with pytest.raises(ValueError, match="title 1: scene ids must be a non-decreasing"):
    SceneSampler([TITLE_A, [0, 1, 0, 2]], 2, "distinct")


def _data_config(**kw):
  return ml_collections.ConfigDict(dict(dict(k=3, w=-1, seed=0, title_weights="uniform",
                                             scenes="none"), **kw))


def test_make_sampler_picks_the_policy_and_checks_the_manifest():
  titles = [dict(id="a", num_snippets=10, snippet_scenes=TITLE_A, dataset_dir="/d"),
            dict(id="b", num_snippets=9, snippet_scenes=TITLE_B, dataset_dir="/d")]
  assert isinstance(make_sampler(_data_config(), titles), sampling.HierarchicalSampler)
  assert make_sampler(_data_config(scenes="adaptive"), titles).policy == "adaptive"
  with pytest.raises(ValueError, match="scene-aware policies set their own window; use w=-1"):
    make_sampler(_data_config(scenes="distinct", w=5), titles)
  with pytest.raises(ValueError, match="expected one of"):
    make_sampler(_data_config(scenes="scene"), titles)
  old = [dict(id="old_title", num_snippets=10, dataset_dir="/data/v1")]
  with pytest.raises(ValueError, match=r"'old_title' in /data/v1.*avjax.ingest.add_scenes"):
    make_sampler(_data_config(scenes="distinct"), old)
