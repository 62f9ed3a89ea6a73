"""Transfer: synthetic downstream sets in the standard layouts and the transfer table from its
archive (records, paired tests by seed, Holm families, the generated doc block). The transfer
test (a short pretraining run's export beats training from scratch downstream) shares the
learning test's run: tests/test_learning.py."""

import json
import os

import numpy as np
import pytest

from avjax.data import layouts
from avjax.downstream import prepare as downstream_prepare
from avjax.evals import archive
from avjax.evals import transfer_table
from avjax.synthetic import downstream as sd
from avjax.synthetic import presets as synthetic_presets
from avjax.synthetic.plan import plan_collection

TINY = {"ucf101": sd.Sizes(classes=2, groups=3, clips_per_group=2, spans=1),
        "hmdb51": sd.Sizes(classes=2, groups=3, clips_per_group=2, spans=1),
        "esc50": sd.Sizes(classes=2, groups=5, clips_per_group=1, spans=1)}


@pytest.mark.parametrize("dataset", layouts.DATASETS)
def test_synthetic_sets_prepare_in_the_standard_layouts(dataset, tmp_path):
  root, out = str(tmp_path / "raw"), str(tmp_path / "prepared")
  labels = sd.generate_downstream(dataset, root, sizes=TINY[dataset], progress=False)
  layout = layouts.read_layout(dataset, root)
  sizes = TINY[dataset]
  n = sizes.classes * sizes.groups * sizes.clips_per_group
  assert len(layout.clips) == n and not layout.missing and not layout.unlisted
  assert layout.classes == sd.class_names(dataset, sizes.classes)
  # Labels are the event classes the clips were rendered with.
  by_path = {c["path"]: c for c in labels["clips"]}
  ids = {c.id: by_path[os.path.relpath(c.path, root).replace(os.sep, "/")]
         for c in layout.clips}
  for clip in layout.clips:
    assert layout.classes[clip.label] == ids[clip.id]["category"]
  # Every split: train and test share no group of a class, and every clip is used.
  for s, split in layout.splits.items():
    train = {(ids[i]["label"], ids[i]["group"]) for i in split["train"]}
    test = {(ids[i]["label"], ids[i]["group"]) for i in split["test"]}
    assert train and test and not train & test, (s, train, test)
    assert len(split["train"]) + len(split["test"]) == n
  # The unchanged preparation reads the set like the real one, at the study's frame rate.
  report = downstream_prepare.prepare(dataset, root, out, fps=5, short_side=32, progress=False)
  assert report["counts"] == dict(listed=n, prepared=n, missing=0, unreadable=0, unlisted=0)
  manifest = downstream_prepare.load_prepared(out)
  seconds = sizes.spans * labels["options"]["snippet_seconds"]
  for clip in manifest["clips"]:
    assert clip["duration"] == pytest.approx(seconds, abs=0.05)
    if layouts.KINDS[dataset] == "video":
      assert clip["num_frames"] == round(seconds * 5)
    else:
      assert clip["num_samples"] == round(seconds * 48000)


def test_downstream_clips_have_fresh_looks_and_the_events_of_their_class():
  options = sd.options_for()
  assert options.genre_looks == 0 and options.grain > 0  # the stated shift
  base = synthetic_presets.preset(sd.BASE_PRESET)
  pretraining = plan_collection(movies=base["movies"], shows=base["shows"],
                                episodes=base["episodes"], minutes=0.1, seed=0,
                                options=base["options"])
  seen = {json.dumps(p["style"]["palette"]) for p in pretraining}
  sizes = sd.Sizes(classes=5, groups=3, clips_per_group=3, spans=2)
  looks = set()
  for c in range(sizes.classes):
    for g in range(sizes.groups):
      plans = sd.plan_group("ucf101", c, g, sizes, options)
      assert len({json.dumps(p["style"]) for p in plans}) == 1  # one look per group
      looks.add(json.dumps(plans[0]["style"]["palette"]))
      for p in plans:
        assert p["duration"] == pytest.approx(2 * options.snippet_seconds)
        assert [e["cls"] for e in p["events"]] == [c, c]
        assert all(s["start"] < p["duration"] for s in p["scenes"])
  assert len(looks) == sizes.classes * sizes.groups and not looks & seen
  with pytest.raises(ValueError, match="multiple of its 5 splits"):
    sd.generate_downstream("esc50", "/nonexistent", sizes=sd.Sizes(groups=3))


# ---------------------------------------------------------------------------
# The table from its archive.

SEEDS = range(10)


def _archive(path, *, transfer_gain=12.0, k_gain=0.0):
  """A table with a planted transfer effect (pretrained vs scratch) and a k effect."""
  sets = {d: dict(classes=5, clips=300, train=200, test=100) for d in transfer_table.DATASETS}
  archive.put(path, dict(kind="study", name=transfer_table.NAME, settings=["k1", "k16_wMn"],
                         seeds=list(SEEDS), sets=sets, modes=list(transfer_table.MODES),
                         schedule="100 steps", shift="test", machine="test", data_seconds=60))
  rng = np.random.default_rng(0)
  for dataset in transfer_table.DATASETS:
    for mode in transfer_table.MODES:
      for seed in SEEDS:
        base = 50 + 5 * rng.normal()  # a seed's difficulty, shared by its arms
        for init, gain in (("scratch", 0.0), ("k1", transfer_gain),
                           ("k16_wMn", transfer_gain + k_gain)):
          top1 = (base + gain + 1.5 * rng.normal()) / 100
          archive.put(path, dict(kind="run", setting=transfer_table.setting(dataset, mode, init),
                                 seed=seed, dataset=dataset, mode=mode, init=init, top1=top1,
                                 num_test=100, wall_seconds=30.0, cpu_seconds=50.0))


def test_the_plan_compares_pretrained_with_scratch_and_k_with_its_reference():
  t, k = transfer_table.plan(["scratch", "k1", "k16_wMn", "k16_w16", "k16_distinct"])
  assert t == [(i, "scratch") for i in ("k1", "k16_wMn", "k16_w16", "k16_distinct")]
  assert k == [("k16_wMn", "k1"), ("k16_w16", "k16_wMn"), ("k16_distinct", "k16_wMn")]
  assert transfer_table.plan(["k1", "k16_wMn"]) == ([], [("k16_wMn", "k1")])
  assert [transfer_table.init_label(i) for i in ("scratch", "k1", "k16_wMn", "k16_w16")] == [
      "from scratch", "k=1", "k=16, w=M_n", "k=16, w=16"]


def test_analysis_finds_a_planted_transfer_effect_and_not_a_null_one(tmp_path):
  path = str(tmp_path / "runs.jsonl")
  _archive(path, transfer_gain=12.0, k_gain=0.0)
  result = transfer_table.analyse(archive.load(path))
  assert len(result["t"]) == 12 and len(result["k"]) == 6  # 2 (1) x 3 sets x 2 modes
  for test in result["t"]:
    assert test["n"] == 10 and test["reject"] and test["lo"] > 5, test
    assert test["seeds_needed"] is not None and test["seeds_needed"] <= 10
  assert not any(t["reject"] for t in result["k"])
  assert all(t["p_holm"] >= t["p"] for t in result["t"] + result["k"])
  # The same seeds pair the arms: shuffling one arm's seeds breaks the pairing.
  values = result["values"][("ucf101", "finetune")]
  shuffled = dict(values, k1=dict(zip(SEEDS, np.roll(list(values["k1"].values()), 1))))
  paired = transfer_table.compare({("ucf101", "finetune"): values}, "ucf101", "finetune",
                                 "k1", "scratch")
  broken = transfer_table.compare({("ucf101", "finetune"): shuffled}, "ucf101", "finetune",
                                 "k1", "scratch")
  assert broken["sd"] > 2 * paired["sd"]


def test_report_is_made_from_the_archive_alone_and_is_reproducible(tmp_path):
  doc = tmp_path / "downstream.md"
  begin = transfer_table.BEGIN.format(name=transfer_table.NAME)
  end = transfer_table.END.format(name=transfer_table.NAME)
  doc.write_text(f"# Downstream\n\nBefore.\n\n{begin}\nold\n{end}\n\nAfter.\n")
  path = str(tmp_path / "runs.jsonl")
  assert transfer_table.write_report(path, str(doc)) is None  # no archive yet
  assert "No runs are recorded yet" in doc.read_text()
  _archive(path, transfer_gain=12.0, k_gain=-8.0)
  transfer_table.write_report(path, str(doc))
  first = doc.read_text()
  assert first.startswith("# Downstream\n\nBefore.") and first.endswith("After.\n")
  assert "old\n" not in first and "No runs are recorded yet" not in first
  assert "| pretraining | HMDB51 (f) | ESC50 (g) | UCF101 (f) |" in first
  assert "| from scratch |" in first and "| k=16, w=M_n |" in first
  assert "family T, Holm over its 12 tests" in first and "family K" in first
  assert "| k=16, w=M_n − k=1 | UCF101 | finetune | 10 |" in first
  assert "per run 50 CPU s" in first and "data preparation 1.0 min." in first
  transfer_table.write_report(path, str(doc))
  assert doc.read_text() == first  # the same archive, the same report
  header = archive.load(path)[0]
  archive.put(path, dict(header, data_seconds=0))  # the sets were made in another sitting
  transfer_table.write_report(path, str(doc))
  assert "data preparation" not in doc.read_text()


def test_run_record_reads_results_and_names_what_is_wrong(tmp_path):
  results = tmp_path / "results.json"
  with pytest.raises(FileNotFoundError, match="results.json: the run has no results"):
    transfer_table.run_record(str(results), dataset="ucf101", mode="finetune", init="k1", seed=0)
  results.write_text(json.dumps(dict(dataset="ucf101", mode="linear", top1=0.5, num_test=10)))
  with pytest.raises(ValueError, match="results of ucf101/linear, recorded as ucf101/finetune"):
    transfer_table.run_record(str(results), dataset="ucf101", mode="finetune", init="k1", seed=0)
  record = transfer_table.run_record(str(results), dataset="ucf101", mode="linear",
                                     init="k1", seed=3, cpu_seconds=12.0)
  assert record["setting"] == "ucf101/linear/k1" and record["seed"] == 3
  assert record["top1"] == 0.5 and record["cpu_seconds"] == 12.0
