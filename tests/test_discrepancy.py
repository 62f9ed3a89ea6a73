"""Discrepancy measures (paper Eq. 2), the linear probe, figures and the study script.

The evaluator in a training run (every N steps, the probe at the end) and its command-line
path are tested on the shared tiny run of tests/test_pretrain.py.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import helpers
from avjax.evals import archive
from avjax.evals import discrepancy
from avjax.evals import measures
from avjax.evals import plots
from avjax.evals import probe
from avjax.evals import study_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------
# Densities and KL.


def test_kl_of_identical_histograms_is_zero():
  rng = np.random.default_rng(0)
  x = rng.normal(size=5000)
  edges = measures.shared_edges([x], bins=40)
  p = measures.histogram_mass(x, edges)
  assert measures.kl_divergence(p, p) == 0.0
  assert np.isclose(p.sum(), 1.0)
  # Empty bins get pseudo-counts, so KL against a disjoint sample stays finite.
  q = measures.histogram_mass(x + 100, edges)
  assert np.isfinite(measures.kl_divergence(p, q))
  assert measures.kl_divergence([0.5, 0.5], [1.0, 0.0]) == float("inf")


def test_kl_of_gaussians_matches_the_closed_form():
  rng = np.random.default_rng(1)
  m1, s1, m2, s2 = 0.0, 1.0, 1.0, 1.5
  p = rng.normal(m1, s1, 200_000)
  q = rng.normal(m2, s2, 200_000)

  def closed(ma, sa, mb, sb):  # KL(N(ma, sa^2) || N(mb, sb^2))
    return np.log(sb / sa) + (sa ** 2 + (ma - mb) ** 2) / (2 * sb ** 2) - 0.5

  edges = measures.shared_edges([p, q], bins=100, quantile=0.001)
  mp, mq = (measures.histogram_mass(x, edges) for x in (p, q))
  assert measures.kl_divergence(mp, mq) == pytest.approx(closed(m1, s1, m2, s2), abs=0.03)
  assert measures.kl_divergence(mq, mp) == pytest.approx(closed(m2, s2, m1, s1), abs=0.06)


# ---------------------------------------------------------------------------
# S+, S-, S!= bookkeeping.

# Rows of a hand-made held-out set: title 7 has 3 snippets, title 2 has 2, title 5 has 1;
# rows are deliberately not sorted by title.
TITLES = np.array([7, 2, 7, 5, 2, 7])


def test_pair_sets_of_a_hand_made_set():
  pairs = measures.all_pairs(TITLES)
  as_set = lambda name: set(zip(*(a.tolist() for a in pairs[name])))
  assert as_set("S+") == {(i, i) for i in range(6)}
  assert as_set("S-") == {(0, 2), (2, 0), (0, 5), (5, 0), (2, 5), (5, 2), (1, 4), (4, 1)}
  neq = as_set("S!=")
  assert len(neq) == 36 - 9 - 4 - 1 == 22
  assert all(TITLES[i] != TITLES[j] for i, j in neq)
  assert measures.pair_counts(TITLES) == {"S+": 6, "S-": 8, "S!=": 22}
  assert as_set("S+") | as_set("S-") | neq == {(i, j) for i in range(6) for j in range(6)}


@pytest.mark.parametrize("name", ["S-", "S!="])
def test_sampled_pairs_are_uniform_over_their_set(name):
  everything = set(zip(*(a.tolist() for a in measures.all_pairs(TITLES)[name])))
  rng = np.random.default_rng(0)
  i, j = measures.sample_pairs(TITLES, name, 44_000, rng)
  drawn = list(zip(i.tolist(), j.tolist()))
  assert set(drawn) == everything  # only pairs of the set, and all of them
  counts = np.array([drawn.count(p) for p in sorted(everything)])
  expected = len(drawn) / len(everything)
  assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_make_pairs_subsamples_only_large_sets():
  pairs, info = measures.make_pairs(TITLES, max_pairs=10, seed=0)
  assert info["S+"] == dict(total=6, used=6, sampled=False)
  assert info["S-"] == dict(total=8, used=8, sampled=False)
  assert info["S!="] == dict(total=22, used=10, sampled=True)
  i, j = pairs["S!="]
  assert np.all(TITLES[i] != TITLES[j])


def test_measures_see_title_structure():
  # Similarities of S- sit between S+ and S!=: KL(S-||S!=) > 0 and the gap is positive.
  rng = np.random.default_rng(0)
  sims = {"S+": rng.normal(3, 1, 400), "S-": rng.normal(1, 1, 4000),
          "S!=": rng.normal(0, 1, 40000)}
  result, edges, mass = measures.measures(sims, bins=50)
  kl = result["kl"]
  assert len(edges) == 51 and all(np.isclose(m.sum(), 1) for m in mass.values())
  assert kl["KL(S-||S!=)"] > 0.3
  assert kl["KL(S!=||S+)"] > kl["KL(S-||S+)"] > 0 and result["gap"] > 0
  # One held-out title: no S!=, its divergences are NaN, the rest still computed.
  result, _, _ = measures.measures({"S+": sims["S+"], "S-": sims["S-"], "S!=": []})
  assert np.isnan(result["kl"]["KL(S-||S!=)"]) and np.isfinite(result["kl"]["KL(S-||S+)"])


def test_merge_results_replaces_a_step_and_keeps_its_probe(tmp_path):
  path = str(tmp_path / "discrepancy.json")
  discrepancy.merge_results(path, dict(step=4, kl={"a": 1.0}, probe={"video": 0.5}), {})
  discrepancy.merge_results(path, dict(step=2, kl={"a": 2.0}), {"bins": 50})
  data = discrepancy.merge_results(path, dict(step=4, kl={"a": 3.0}), {"bins": 50})
  assert [e["step"] for e in data["steps"]] == [2, 4]
  assert data["steps"][1] == dict(step=4, kl={"a": 3.0}, probe={"video": 0.5})
  assert json.load(open(path)) == data


# ---------------------------------------------------------------------------
# Probe.


def test_probe_recovers_a_planted_linear_signal():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(16, 5))
  x = rng.normal(size=(1200, 16)) * 3 + 7  # scaled and shifted: standardization matters
  y = np.argmax((x - 7) @ w, axis=1)
  acc = probe.probe_accuracy(x[:1000], y[:1000], x[1000:], y[1000:], 5)
  assert acc > 0.9
  noise = rng.normal(size=(1200, 16))
  assert probe.probe_accuracy(noise[:1000], y[:1000], noise[1000:], y[1000:], 5) < 0.5


def test_snippet_labels_by_time_overlap():
  events = [dict(start=0.3, end=2.9, **{"class": 4}), dict(start=3.5, end=6.0, **{"class": 1}),
            dict(start=6.2, end=7.0, **{"class": 2}), dict(start=9.0, end=9.5, **{"class": 3})]
  # Snippets of 3.2 s: [0, 3.2) [3.2, 6.4) [6.4, 9.6) [9.6, 12.8)
  labels = probe.snippet_labels(events, 4, 3.2)
  assert labels.tolist() == [4, 1, 2, -1]  # [6.4, 9.6): class 2 overlaps 0.6 s, class 3 0.5 s


def test_find_labels_next_to_the_sources(tmp_path):
  source = tmp_path / "synthetic"
  (source / "movies").mkdir(parents=True)
  (source / "labels.json").write_text("{}")
  titles = [dict(id="m", source=str(source / "movies" / "m.mp4"), dataset_dir=str(tmp_path))]
  assert probe.find_labels(titles) == str(source / "labels.json")
  assert probe.find_labels([dict(id="m", source="/nowhere/m.mp4")]) is None


# ---------------------------------------------------------------------------
# Figures.


def test_histogram_figure_shows_no_pseudo_count_floor_and_a_robust_range(tmp_path):
  rng = np.random.default_rng(0)
  sims = {"S+": rng.normal(2.0, 0.5, 30),  # few pairs: pseudo-counts would be a third
          "S-": rng.normal(0.0, 1.0, 5000),
          "S!=": np.concatenate([rng.normal(-0.5, 1.0, 20000), [-30.0, -29.0, 25.0]])}
  result, edges, mass = measures.measures(sims, bins=50, smoothing=0.5, quantile=0.0)
  width = np.diff(edges)
  density = plots.histogram_density(mass["S+"], 30, 0.5, width)
  counts, _ = np.histogram(sims["S+"], bins=edges)
  np.testing.assert_allclose(density * width * 30, counts, atol=1e-9)  # the raw histogram
  assert (density == 0).sum() > 30  # empty bins stay empty: no flat floor
  lo, hi = plots.robust_range(edges, [plots.histogram_density(mass[n], len(sims[n]), 0.5,
                                                              width) for n in sims])
  assert edges[0] < lo < -3 and 3 < hi < edges[-1]  # the outliers at -30 and 25 are cut
  entry = dict(step=1, kl=result["kl"], pairs={n: {"used": len(v)} for n, v in sims.items()})
  path = str(tmp_path / "hist.png")
  plots.plot_histograms(edges, mass, entry, path, title="t", smoothing=0.5)
  assert os.path.getsize(path) > 1000


# ---------------------------------------------------------------------------
# The study script at a toy size.


@pytest.mark.slow
def test_study_script_runs_end_to_end_at_toy_size(tmp_path):
  env = helpers.command_env(TOY="1", AVJAX_SKIP_INSTALL="1")  # one CPU device, as by hand
  root = tmp_path / "study"
  script = os.path.join(ROOT, "launch", "study_sampling.sh")
  proc = subprocess.run(["bash", script, str(root)], env=env, capture_output=True, text=True,
                        timeout=900, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  # On an empty compile cache the first run went alone; the next ones read its programs.
  assert (re.search(r"k1_seed0: \d+ s;", proc.stdout).start()
          < proc.stdout.index("k2_wMn_seed0: pretraining"))
  doc = (root / "study_sampling.md").read_text()
  assert study_report.BEGIN.format(name="study_v3") in doc and "TOY SIZE" in doc
  assert study_report.END.format(name="study_v3") in doc
  # Two settings x two seeds, and each seed's random-initialisation baseline, archived.
  path = root / "figures" / "runs.jsonl"
  header, runs, baselines = archive.load(str(path))
  assert [s["label"] for s in header["settings"]] == ["k=1", "k=2, w=M_n"]
  assert sorted((r["setting"], r["seed"]) for r in runs) == [
      ("k1", 0), ("k1", 1), ("k2_wMn", 0), ("k2_wMn", 1)]
  assert sorted(b["seed"] for b in baselines) == [0, 1]
  assert {"random_bn", "inputs"} <= set(baselines[0]["final"]["probe"])
  assert "genre_probe" in runs[0]["final"] and "random_bn" not in runs[0]["final"]["probe"]
  assert "| k=2, w=M_n vs k=1 | event f | 2 |" in doc  # the primary comparison, paired
  assert "What the inputs alone say" in doc and "video_pixels" in doc
  for name in ("loss.png", "divergences.png", "probes.png", "differences.png"):
    assert os.path.exists(root / "figures" / name)
  # The study goes on from its archive: nothing recorded is run again...
  again = subprocess.run(["bash", script, str(root)], env=env, capture_output=True, text=True,
                         timeout=900, check=False)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  assert again.stdout.count("in the archive, skipped") == 4 and "pretraining" not in again.stdout
  # ...and the archive alone makes the same report, without the runs' workdirs.
  shutil.rmtree(root / "runs")
  copy = root / "copy.md"
  subprocess.run([sys.executable, "-m", "avjax.plots", f"--study={path}", f"--doc={copy}",
                  f"--figures={root / 'figures'}"], env=env, check=True, capture_output=True)
  block = lambda text: text[text.index("<!-- study_v3:begin"):]
  assert block(copy.read_text()) == block(doc)
