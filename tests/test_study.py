"""A study from its archive: records, the planned comparisons, the verdicts, the report."""

import json
import math

import numpy as np
import pytest

from avjax.evals import archive
from avjax.evals import study
from avjax.evals import study_report

SETTINGS = ["1:-1", "4:-1", "16:-1", "16:16"]
KLS = ("KL(S-||S+)", "KL(S!=||S+)", "KL(S-||S!=)")


def _final(event_f, *, kl_minus_neq=0.01, loss_shift=0.0, seed=0):
  rng = np.random.default_rng(seed)
  probe = dict(video=event_f, audio=0.9, video_z=event_f, audio_z=0.9, num_classes=5,
               majority=0.2, num_train=100, num_test=50)
  return dict(step=300, kl={KLS[0]: 1.0, KLS[1]: 1.0, KLS[2]: kl_minus_neq}, gap=0.0,
              mean={"S+": 3.0, "S-": 1.0, "S!=": 1.0},
              kl_floor={KLS[0]: 0.03, KLS[1]: 0.03, KLS[2]: 0.004},
              separation=dict(diff=2.0, lo=1.0, hi=3.0),
              probe=probe, title_probe=dict(video=0.2 + 0.01 * rng.random(), audio=0.5,
                                            video_z=0.2, audio_z=0.5),
              hist=dict(lo=0.0, hi=1.0, bins=4, smoothing=0.5,
                        mass={"S+": [0.1, 0.2, 0.3, 0.4], "S-": [0.4, 0.3, 0.2, 0.1],
                              "S!=": [0.25, 0.25, 0.25, 0.25]}),
              pairs={"S+": {"used": 10}, "S-": {"used": 90}, "S!=": {"used": 400}})


def _archive(path, effect, seeds=12, noise=2.0):
  """An archive whose k = 16 arm beats k = 1 by `effect` points on event f, paired by seed
  (a shared seed effect), k = w = 16 loses 4 points to k = 16, k = 4 equals k = 1."""
  rng = np.random.default_rng(0)
  archive.put(path, dict(kind="study", name="study_test", heading="### Results: test",
                         description="test archive", seeds=list(range(seeds)),
                         settings=[study.parse_setting(s) for s in SETTINGS]))
  for seed in range(seeds):
    base = 60 + 5 * rng.normal()  # the seed's initialisation: shared by every arm
    arms = {"k1": 0.0, "k4_wMn": 0.0, "k16_wMn": effect, "k16_w16": effect - 4}
    for name, shift in arms.items():
      k, w = {"k1": (1, -1), "k4_wMn": (4, -1), "k16_wMn": (16, -1), "k16_w16": (16, 16)}[name]
      event = (base + shift + noise * rng.normal()) / 100
      archive.put(path, dict(kind="run", setting=name, seed=seed, k=k, w=w, scenes="none",
                             final=_final(event, kl_minus_neq=0.05 if k == 1 else 0.01,
                                          seed=seed),
                             curve=[dict(step=150, kl={n: 1.0 for n in KLS}, kl_floor={},
                                         gap=0.0),
                                    dict(step=300, kl={n: 1.2 for n in KLS}, kl_floor={},
                                         gap=0.0)],
                             loss=[[s, 4.0 - s / 300 + (0.2 if k > 1 else 0.0)]
                                   for s in range(10, 310, 10)], wall_seconds=60))
    baseline = _final((base - 30) / 100, seed=seed)
    baseline["probe"]["random_bn"] = dict(video=(base - 25) / 100, audio=0.8, video_z=0.3,
                                          audio_z=0.8)
    baseline["probe"]["inputs"] = dict(video_pixels=0.8, audio_mel=0.99)
    archive.put(path, dict(kind="baseline", setting="random init", seed=seed, final=baseline,
                           wall_seconds=30))


def test_archive_round_trip_replaces_by_key_and_names_bad_lines(tmp_path):
  path = str(tmp_path / "runs.jsonl")
  archive.put(path, dict(kind="study", name="x", settings=[]))
  archive.put(path, dict(kind="run", setting="k1", seed=0, final={"loss": 1.23456789}))
  archive.put(path, dict(kind="run", setting="k1", seed=0, final={"loss": 2.0}))  # replaces
  archive.put(path, dict(kind="baseline", setting="random init", seed=0, final={}))
  header, runs, baselines = archive.load(path)
  assert header["name"] == "x" and len(runs) == 1 and len(baselines) == 1
  assert runs[0]["final"]["loss"] == 2.0
  assert archive.has(path, "run", "k1", 0) and not archive.has(path, "run", "k1", 1)
  archive.put(path, dict(kind="run", setting="k1", seed=1, final={"loss": math.pi}))
  assert archive.load(path)[1][1]["final"]["loss"] == 3.1416  # 5 significant digits
  with open(path, "a", encoding="utf-8") as f:
    f.write("{not json\n")
  with pytest.raises(ValueError, match=r"runs.jsonl, line 5: not a JSON record"):
    archive.load(path)


def test_a_later_sitting_keeps_the_earlier_seeds_and_the_data_time(tmp_path):
  path = str(tmp_path / "runs.jsonl")
  archive.put_header(path, dict(kind="study", name="x", seeds=[0, 1], data_seconds=300))
  archive.put_header(path, dict(kind="study", name="x", seeds=["2"], data_seconds=0, lr=0.1))
  header = archive.load(path)[0]
  assert header["seeds"] == [0, 1, 2] and header["data_seconds"] == 300 and header["lr"] == 0.1
  fresh = str(tmp_path / "fresh.jsonl")  # the first sitting measures the data
  archive.put_header(fresh, dict(kind="study", name="x", seeds=[3], data_seconds=42))
  assert archive.load(fresh)[0]["data_seconds"] == 42


def test_reproduction_compares_a_runs_losses_across_archives(tmp_path):
  """launch/transfer.sh's check that a run it pretrained is the study's run."""
  study_path, again = str(tmp_path / "study.jsonl"), str(tmp_path / "again.jsonl")
  archive.put(study_path, dict(kind="run", setting="k1", seed=3, loss=[[0, 8.0], [10, 4.0]]))
  archive.put(again, dict(kind="run", setting="k1", seed=3, loss=[[0, 8.0], [10, 4.0]]))
  assert archive.reproduction(again, study_path, "k1", 3) == 0.0
  archive.put(again, dict(kind="run", setting="k1", seed=3, loss=[[0, 8.0], [5, 6], [10, 4.2]]))
  assert archive.reproduction(again, study_path, "k1", 3) == pytest.approx(0.05)
  assert archive.reproduction(again, study_path, "k1", 4) is None  # not in either
  archive.put(again, dict(kind="run", setting="k1", seed=3, loss=[[5, 6.0]]))
  with pytest.raises(ValueError, match="k1 seed 3: no step logged in both"):
    archive.reproduction(again, study_path, "k1", 3)


def test_the_plan_pairs_each_setting_with_its_reference():
  settings = [study.parse_setting(s) for s in SETTINGS + ["16:-1:distinct"]]
  plan = study.plan(settings)
  assert plan["primary"] == ("k16_wMn", "k1")
  assert plan["s1"] == [("k4_wMn", "k1"), ("k16_w16", "k16_wMn"), ("k16_distinct", "k16_wMn")]
  assert [a for a, _ in plan["l"]] == ["k1", "k4_wMn", "k16_wMn", "k16_w16", "k16_distinct"]
  # Without k = 1 there is no primary comparison; window arms still meet w = M_n.
  plan = study.plan([study.parse_setting(s) for s in ("16:-1", "16:16")])
  assert plan["primary"] is None and plan["s1"] == [("k16_w16", "k16_wMn")]


def test_analysis_finds_a_real_paired_effect_and_not_a_null_one(tmp_path):
  path = str(tmp_path / "runs.jsonl")
  _archive(path, effect=6.0)
  result = study.analyse(archive.load(path))
  primary = result["primary"]
  assert primary["n"] == 12 and primary["diff"] == pytest.approx(6.0, abs=2.5)
  assert primary["reject"] and primary["lo"] > 0 and primary["r"] > 0.5
  s1 = {(t["a"], t["b"]): t for t in result["s1"]}
  assert not s1[("k4_wMn", "k1")]["reject"]  # no effect built in
  assert s1[("k16_w16", "k16_wMn")]["reject"] and s1[("k16_w16", "k16_wMn")]["diff"] < 0
  # (the planted KL and loss differences are equal at every seed: not tested, p NaN)
  assert all(t["p_holm"] >= t["p"] for t in result["s1"] + result["s2"] if np.isfinite(t["p"]))
  assert study.verdict(primary, expected_sign=+1) == "reproduced"
  assert study.verdict(s1[("k16_w16", "k16_wMn")], expected_sign=-1) == "reproduced"
  assert study.verdict(s1[("k4_wMn", "k1")], expected_sign=+1) == "not resolved"
  learning = {t["a"]: t for t in result["l"]}
  assert all(t["reject"] and t["diff"] > 20 for t in learning.values())
  # A reversed effect is called so.
  path = str(tmp_path / "reversed.jsonl")
  _archive(path, effect=-6.0)
  assert study.verdict(study.analyse(archive.load(path))["primary"],
                       expected_sign=+1) == "reversed"


def test_report_is_made_from_the_archive_alone_and_is_reproducible(tmp_path):
  path = str(tmp_path / "runs.jsonl")
  _archive(path, effect=6.0)
  doc, figures = tmp_path / "doc.md", tmp_path / "figures"
  doc.write_text("# Study\n\nText before.\n\n<!-- study_test:begin (generated by python -m "
                 "avjax.plots --study) -->\nold\n<!-- study_test:end -->\n\nText after.\n")
  study_report.write_report(path, str(doc), str(figures))
  first = doc.read_text()
  assert first.startswith("# Study\n\nText before.") and first.endswith("Text after.\n")
  assert "old\n" not in first and "**Primary comparison**" in first
  assert "| k=16, w=M_n vs k=1 | event f | 12 |" in first
  assert "**reproduced**" in first and "family S1, Holm" in first
  assert "random init, BatchNorm recalibrated" in first and "video_pixels" in first
  for name in ("loss.png", "divergences.png", "probes.png", "differences.png",
               "hist_k1.png"):
    assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  study_report.write_report(path, str(doc), str(figures))
  assert doc.read_text() == first  # the same archive, the same report


def test_repeats_of_iid_groups_match_the_birthday_count():
  """k = 1 i.i.d.: expected repeated snippets per batch ~ C(B, 2) / S for B << S."""
  counts = [20] * 50  # S = 1000 snippets
  fraction, mean = study.repeats_iid_groups(counts, 1, None, 32, batches=3000)
  assert mean == pytest.approx(32 * 31 / 2 / 1000, rel=0.15)
  assert fraction == pytest.approx(1 - math.exp(-32 * 31 / 2 / 1000), abs=0.05)
  # k = 16 of titles of 16 snippets: a title drawn twice repeats all 16 of its snippets.
  fraction, mean = study.repeats_iid_groups([16] * 10, 16, None, 64, batches=2000)
  p_repeat = 1 - math.prod(1 - i / 10 for i in range(4))  # 4 groups, 10 titles
  assert fraction == pytest.approx(p_repeat, abs=0.04)


def test_archived_run_record_keeps_what_the_report_needs(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  entry = dict(_final(0.7), kl_floor={n: dict(mean=0.01, p95=0.02) for n in KLS},
               separation={"S+ - S!=": dict(diff=2.0, lo=1.0, hi=3.0)})
  entry["probe"]["labels"] = "/somewhere/labels.json"
  (workdir / "discrepancy.json").write_text(json.dumps(dict(steps=[dict(entry, step=150),
                                                                   entry])))
  (workdir / "metrics.jsonl").write_text("".join(
      json.dumps(dict(step=s, loss=4.0 - s / 100)) + "\n" for s in (10, 20, 30)))
  record = archive.run_record(str(workdir), setting="k16_wMn", seed=3, k=16, w=-1)
  assert record["final"]["kl_floor"] == {n: 0.02 for n in KLS}
  assert "labels" not in record["final"]["probe"]  # no machine's paths in the archive
  assert [c["step"] for c in record["curve"]] == [150, 300]
  assert record["loss"] == [[10, 3.9], [20, 3.8], [30, 3.7]]
  assert archive.histogram(record["final"])[0].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
  # A run made without evaluations (RUNS_ONLY=1) is archived with its losses alone.
  losses_only = archive.loss_record(str(workdir), setting="k16_wMn", seed=3, k=16, w=-1)
  assert losses_only["loss"] == record["loss"] and "final" not in losses_only
  (workdir / "metrics.jsonl").write_text("")
  with pytest.raises(ValueError, match="no loss logged"):
    archive.loss_record(str(workdir), setting="k16_wMn", seed=3, k=16, w=-1)
