"""Noise floors, bootstrap intervals, the title probe's time split, study statistics and the
readable summaries: pure functions, checked on data with a known answer."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from avjax.evals import inputs
from avjax.evals import measures
from avjax.evals import probe
from avjax.evals import resampling
from avjax.evals import stats
from avjax.evals import summary


def _embeddings(aligned, titles=30, per_title=12, seed=0, title_effect=0.0):
  """Embeddings of `titles` x `per_title` snippets; audio follows video when `aligned`, and
  both share a per-title offset of scale `title_effect`."""
  rng = np.random.default_rng(seed)
  title_index = np.repeat(np.arange(titles), per_title)
  offset = title_effect * rng.normal(size=(titles, 8))[title_index]
  z_video = rng.normal(size=(len(title_index), 8)) + offset
  z_audio = (z_video if aligned else rng.normal(size=z_video.shape) + offset) + rng.normal(
      size=z_video.shape)
  return z_video, z_audio, title_index


def _similarities(aligned, titles=30, per_title=12, seed=0, title_effect=0.0):
  z_video, z_audio, title_index = _embeddings(aligned, titles, per_title, seed, title_effect)
  pairs, _ = measures.make_pairs(title_index, max_pairs=10**6)
  sims = {n: measures.pair_similarities(z_video, z_audio, pairs[n]) for n in measures.SETS}
  return sims, pairs, title_index


def _floors(aligned, rounds=10, **kwargs):
  z_video, z_audio, title_index = _embeddings(aligned, **kwargs)
  pairs, _ = measures.make_pairs(title_index, max_pairs=10**6)
  sims = {n: measures.pair_similarities(z_video, z_audio, pairs[n]) for n in measures.SETS}
  result, edges, _ = measures.measures(sims)
  floors = resampling.kl_floors(z_video, z_audio, title_index, pairs, edges, max_pairs=10**6,
                                rounds=rounds)
  return result, floors


def test_kl_floors_bound_the_null_and_not_a_real_difference():
  result, floors = _floors(aligned=True)
  assert set(floors) == set(result["kl"])
  # S+ (aligned pairs) differs from S- and S!= far beyond the floor...
  assert result["kl"]["KL(S-||S+)"] > 5 * floors["KL(S-||S+)"]["p95"]
  assert result["kl"]["KL(S!=||S+)"] > 5 * floors["KL(S!=||S+)"]["p95"]
  # ...while S- and S!= are one distribution here: their KL sits at the floor.
  assert result["kl"]["KL(S-||S!=)"] < 2 * floors["KL(S-||S!=)"]["p95"]
  assert 0 < floors["KL(S-||S+)"]["mean"] <= floors["KL(S-||S+)"]["p95"]


def test_kl_floor_of_s_minus_vs_s_neq_detects_a_shared_title_cue():
  """Video and audio of a title share an offset (a title cue in both modalities): S- stands
  above S!=, beyond the floor of shuffled title labels; without the cue it does not."""
  result, floors = _floors(aligned=False, title_effect=1.0)
  assert result["kl"]["KL(S-||S!=)"] > 5 * floors["KL(S-||S!=)"]["p95"]
  result, floors = _floors(aligned=False, title_effect=0.0)
  assert result["kl"]["KL(S-||S!=)"] < 2 * floors["KL(S-||S!=)"]["p95"]


def test_kl_floor_shrinks_with_the_sample_size():
  _, small = _floors(aligned=False, titles=10, per_title=6)
  _, large = _floors(aligned=False, titles=40, per_title=12)
  assert large["KL(S!=||S+)"]["p95"] < small["KL(S!=||S+)"]["p95"]


def test_separation_interval_excludes_zero_only_when_s_plus_stands_out():
  sims, pairs, title_index = _similarities(aligned=True)
  sep = resampling.gap_intervals(sims, pairs, title_index, rounds=300)
  assert resampling.separated(sep["S+ - S!="]) and resampling.separated(sep["S+ - S-"])
  point = np.mean(sims["S+"]) - np.mean(sims["S!="])
  assert sep["S+ - S!="]["diff"] == pytest.approx(point)
  sims, pairs, title_index = _similarities(aligned=False)
  sep = resampling.gap_intervals(sims, pairs, title_index, rounds=300)
  assert sep["S+ - S!="]["lo"] < 0 < sep["S+ - S!="]["hi"]
  assert not resampling.separated(sep["S+ - S!="])


def test_bootstrap_weights_copies_of_one_title_as_one_title():
  """One title whose S+ is far above the rest: the interval must be wide (a title is the
  unit), not as narrow as if its snippets were independent."""
  sims, pairs, title_index = _similarities(aligned=False, titles=20, per_title=10)
  i, _ = pairs["S+"]
  sims["S+"] = np.where(title_index[i] == 0, 50.0, sims["S+"])
  sep = resampling.gap_intervals(sims, pairs, title_index, rounds=500)["S+ - S!="]
  assert sep["hi"] - sep["lo"] > 2.0  # ~ 50 / 20 titles, not ~ 50 / 200 snippets


def test_title_probe_splits_each_title_by_time():
  title_index = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
  snippet_index = np.array([3, 0, 2, 1, 0, 1, 2, 3, 0])
  fit, score = probe.split_by_time(title_index, snippet_index)
  assert fit.tolist() == [False, True, True, True, True, True, True, False, False]
  assert score.tolist() == [True, False, False, False, False, False, False, True, False]
  # A title-wide offset is read back from the later snippets; noise alone is not.
  rng = np.random.default_rng(0)
  titles = np.repeat(np.arange(10), 12)
  index = np.tile(np.arange(12), 10)
  offsets = rng.normal(size=(10, 6)) * 3
  x = offsets[titles] + rng.normal(size=(len(titles), 6))
  assert probe.title_probe_accuracy(x, titles, index, steps=200) > 0.9
  assert probe.title_probe_accuracy(rng.normal(size=x.shape), titles, index, steps=200) < 0.4


def test_input_title_identification():
  rng = np.random.default_rng(1)
  titles = np.repeat(np.arange(8), 6)
  index = np.tile(np.arange(6), 8)
  x = rng.normal(size=(8, 5))[titles] * 4 + rng.normal(size=(len(titles), 5))
  acc, n = inputs.title_identification(x, titles, index)
  assert n == 8 and acc > 0.9
  acc, _ = inputs.title_identification(rng.normal(size=x.shape), titles, index)
  assert acc < 0.5
  feats = inputs.input_features(np.ones((2, 4, 32, 32, 3)), np.zeros((2, 96, 50, 1)))
  assert {k: v.shape for k, v in feats.items()} == {
      "video_colour": (2, 3), "video_pixels": (2, 192), "audio_mel": (2, 96),
      "audio_mel_grid": (2, 192)}


def test_mean_ci():
  mean, half, n = stats.mean_ci([0.5, 0.6, 0.7, None, float("nan")])
  assert n == 3 and mean == pytest.approx(0.6)
  assert half == pytest.approx(4.303 * 0.1 / np.sqrt(3), rel=1e-3)  # t(0.975, 2) = 4.303


def test_paired_t_matches_the_textbook_and_uses_only_shared_seeds():
  a = {0: 70.0, 1: 65.0, 2: 72.0, 3: 68.0, 4: 75.0, 9: 99.0}
  b = {0: 60.0, 1: 64.0, 2: 66.0, 3: 61.0, 4: 70.0, 5: 1.0}
  out = stats.paired(a, b)
  d = np.array([10.0, 1.0, 6.0, 7.0, 5.0])
  t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
  assert out["n"] == 5 and out["seeds"] == [0, 1, 2, 3, 4]
  assert out["diff"] == pytest.approx(5.8) and out["t"] == pytest.approx(t)
  assert out["p"] == pytest.approx(2 * scipy_stats.t.sf(t, 4))
  assert out["lo"] == pytest.approx(5.8 - 2.776 * d.std(ddof=1) / np.sqrt(5), rel=1e-3)
  assert out["r"] == pytest.approx(np.corrcoef([70, 65, 72, 68, 75], [60, 64, 66, 61, 70])[0, 1])
  # Pairing matters: the same numbers unpaired would not be told apart this clearly.
  unpaired = scipy_stats.ttest_ind([70, 65, 72, 68, 75], [60, 64, 66, 61, 70]).pvalue
  assert out["p"] < unpaired


def test_paired_differences_without_spread_are_not_tested():
  same = stats.paired({0: 71.25, 1: 68.75}, {0: 72.5, 1: 70.0})  # both -1.25
  assert same["diff"] == pytest.approx(-1.25) and same["sd"] == 0.0
  assert np.isnan(same["p"]) and np.isnan(same["t"])  # not "p = 0, significant"
  assert stats.holm([same["p"], 0.04])[1] == [False, True]  # and not counted by Holm
  zero = stats.paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
  assert zero["p"] == 1.0 and zero["t"] == 0.0
  assert stats.decision(same) == "not tested" and stats.decision(zero) == "not significant"
  assert stats.decision(dict(p=0.001, reject=True)) == "**significant**"


def test_holm_steps_down():
  adjusted, rejected = stats.holm([0.01, 0.04, 0.03, float("nan")])
  # Sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone.
  assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adjusted[3])
  assert rejected == [True, False, False, False]


def test_seeds_for_power():
  # Two-sided paired t, 80% power for a 6-point effect at sd 8.8: about 20 seeds.
  n = stats.seeds_for_power(6.0, 8.8)
  assert stats.paired_power(n, 6.0, 8.8) >= 0.8 > stats.paired_power(n - 1, 6.0, 8.8)
  assert 18 <= n <= 21


def test_summary_says_whether_it_learns():
  entry = dict(step=10, kl={"KL(S-||S+)": 0.5}, gap=0.1,
               kl_floor={"KL(S-||S+)": dict(mean=0.02, p95=0.03)},
               separation={"titles": 12, "level": 0.95,
                           "S+ - S!=": dict(diff=1.5, lo=0.9, hi=2.1)},
               probe=dict(video=0.8, audio=0.9, num_classes=5, majority=0.2,
                          random=dict(video=0.3, audio=0.85),
                          random_bn=dict(video=0.4, audio=0.88)))
  text = "\n".join(summary.summary_lines(entry))
  assert "KL(S-||S+) 0.500 (floor 0.030)" in text
  assert "separated" in text and "NOT separated" not in text
  assert "random init  30.0% (+50.0)" in text and "BN recalibrated  40.0% (+40.0)" in text
  verdict = summary.verdict_lines(entry)
  assert "[0.900, 2.100]" in verdict[0] and "f 80.0% vs 40.0% (+40.0)" in verdict[1]
  assert "BN recalibrated" in verdict[1]
  entry["separation"]["S+ - S!="]["lo"] = -0.1
  assert "NOT separated" in summary.verdict_lines(entry)[0]
