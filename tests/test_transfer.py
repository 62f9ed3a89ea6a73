"""Transfer: synthetic downstream sets in the standard layouts, the transfer table from its
archive (records, paired tests by seed, Holm families, the generated doc block), and the
transfer test: a short pretraining run's export beats training from scratch downstream."""

import json
import os

import numpy as np
import pytest

from avjax.data import layouts
from avjax.downstream import prepare as downstream_prepare
from avjax.evals import archive
from avjax.evals import transfer
from avjax.evals import transfer_report
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
  archive.put(path, dict(kind="study", name=transfer.NAME, settings=["k1", "k16_wMn"],
                         seeds=list(SEEDS), sets={d: dict(classes=5, clips=300, train=200,
                                                          test=100) for d in transfer.DATASETS},
                         modes=list(transfer.MODES), schedule="100 steps", shift="test",
                         machine="test", data_seconds=60))
  rng = np.random.default_rng(0)
  for dataset in transfer.DATASETS:
    for mode in transfer.MODES:
      for seed in SEEDS:
        base = 50 + 5 * rng.normal()  # a seed's difficulty, shared by its arms
        for init, gain in (("scratch", 0.0), ("k1", transfer_gain),
                           ("k16_wMn", transfer_gain + k_gain)):
          top1 = (base + gain + 1.5 * rng.normal()) / 100
          archive.put(path, dict(kind="run", setting=transfer.setting(dataset, mode, init),
                                 seed=seed, dataset=dataset, mode=mode, init=init, top1=top1,
                                 num_test=100, wall_seconds=30.0, cpu_seconds=50.0))


def test_the_plan_compares_pretrained_with_scratch_and_k_with_its_reference():
  t, k = transfer.plan(["scratch", "k1", "k16_wMn", "k16_w16", "k16_distinct"])
  assert t == [(i, "scratch") for i in ("k1", "k16_wMn", "k16_w16", "k16_distinct")]
  assert k == [("k16_wMn", "k1"), ("k16_w16", "k16_wMn"), ("k16_distinct", "k16_wMn")]
  assert transfer.plan(["k1", "k16_wMn"]) == ([], [("k16_wMn", "k1")])
  assert [transfer.init_label(i) for i in ("scratch", "k1", "k16_wMn", "k16_w16")] == [
      "from scratch", "k=1", "k=16, w=M_n", "k=16, w=16"]


def test_analysis_finds_a_planted_transfer_effect_and_not_a_null_one(tmp_path):
  path = str(tmp_path / "runs.jsonl")
  _archive(path, transfer_gain=12.0, k_gain=0.0)
  result = transfer.analyse(archive.load(path))
  assert len(result["t"]) == 12 and len(result["k"]) == 6  # 2 (1) x 3 sets x 2 modes
  for test in result["t"]:
    assert test["n"] == 10 and test["reject"] and test["lo"] > 5, test
    assert test["seeds_needed"] is not None and test["seeds_needed"] <= 10
  assert not any(t["reject"] for t in result["k"])
  assert all(t["p_holm"] >= t["p"] for t in result["t"] + result["k"])
  # The same seeds pair the arms: shuffling one arm's seeds breaks the pairing.
  values = result["values"][("ucf101", "finetune")]
  shuffled = dict(values, k1=dict(zip(SEEDS, np.roll(list(values["k1"].values()), 1))))
  paired = transfer.compare({("ucf101", "finetune"): values}, "ucf101", "finetune", "k1",
                            "scratch")
  broken = transfer.compare({("ucf101", "finetune"): shuffled}, "ucf101", "finetune", "k1",
                            "scratch")
  assert broken["sd"] > 2 * paired["sd"]


def test_report_is_made_from_the_archive_alone_and_is_reproducible(tmp_path):
  doc = tmp_path / "downstream.md"
  begin = transfer_report.BEGIN.format(name=transfer.NAME)
  end = transfer_report.END.format(name=transfer.NAME)
  doc.write_text(f"# Downstream\n\nBefore.\n\n{begin}\nold\n{end}\n\nAfter.\n")
  path = str(tmp_path / "runs.jsonl")
  assert transfer_report.write_report(path, str(doc)) is None  # no archive yet
  assert "No runs are recorded yet" in doc.read_text()
  _archive(path, transfer_gain=12.0, k_gain=-8.0)
  transfer_report.write_report(path, str(doc))
  first = doc.read_text()
  assert first.startswith("# Downstream\n\nBefore.") and first.endswith("After.\n")
  assert "old\n" not in first and "No runs are recorded yet" not in first
  assert "| pretraining | HMDB51 (f) | ESC50 (g) | UCF101 (f) |" in first
  assert "| from scratch |" in first and "| k=16, w=M_n |" in first
  assert "family T, Holm over its 12 tests" in first and "family K" in first
  assert "| k=16, w=M_n − k=1 | UCF101 | finetune | 10 |" in first
  assert "per run 50 CPU s" in first
  transfer_report.write_report(path, str(doc))
  assert doc.read_text() == first  # the same archive, the same report


def test_run_record_reads_results_and_names_what_is_wrong(tmp_path):
  results = tmp_path / "results.json"
  with pytest.raises(FileNotFoundError, match="results.json: the run has no results"):
    transfer.run_record(str(results), dataset="ucf101", mode="finetune", init="k1", seed=0)
  results.write_text(json.dumps(dict(dataset="ucf101", mode="linear", top1=0.5, num_test=10)))
  with pytest.raises(ValueError, match="results of ucf101/linear, recorded as ucf101/finetune"):
    transfer.run_record(str(results), dataset="ucf101", mode="finetune", init="k1", seed=0)
  record = transfer.run_record(str(results), dataset="ucf101", mode="linear", init="k1",
                               seed=3, cpu_seconds=12.0)
  assert record["setting"] == "ucf101/linear/k1" and record["seed"] == 3
  assert record["top1"] == 0.5 and record["cpu_seconds"] == 12.0


# ---------------------------------------------------------------------------
# Transfer, end to end (slow): the export of a short pretraining run, evaluated on a tiny
# downstream set, beats the same model trained from scratch with the same schedule and
# seed; the same check fails when the export is replaced by a random one.
#
# The check is on linear evaluation (f frozen, a linear classifier trained on its pooled
# features). Measured as the test runs it: clip top-1 0.70 from the export (60 pretraining
# steps; 0.70 with 100 too) against 0.44 from scratch and 0.30 from a random export, i.e.
# +0.26 and -0.14 against MARGIN; an export of 40 pretraining steps reached 0.58 (+0.14)
# and fails the check too. With other fine-tuning seeds (100 pretraining steps, threefry
# keys): +0.30 and +0.46 from the export, -0.08 and +0.10 from a random one.
# Fine-tuning all of f was measured on the same set and is not asserted: a single run moves
# by about 12 points with the seed, and a random export did as well as the pretrained one
# (fine-tuned top-1 0.64, 0.58, 0.56 from the export, 0.42, 0.50, 0.66 from scratch, 0.52,
# 0.62, 0.62 from a random export, seeds 0-2). That comparison needs many paired seeds:
# the transfer table (launch/transfer.sh, docs/downstream.md) makes it.

PRETRAIN_STEPS = 60
DOWNSTREAM = sd.Sizes(classes=5, groups=6, clips_per_group=5, spans=2)  # 100 train, 50 test
# The schedule of the test: launch/transfer.sh's inputs, a shorter run at batch 16.
SCHEDULE = ("model.video.name=r2plus1d_tiny,model.audio.name=resnet_audio_tiny,"
            "model.dtype=float32,data.num_frames=4,data.fps=1.25,data.scale_min=32,"
            "data.scale_max=40,data.crop_size=32,data.test_short_side=32,"
            "data.shuffle_buffer=128,batch_size=16,eval_batch_size=16,total_steps=60,"
            "optimizer.lr_peak=0.05,optimizer.warmup_epochs=1,log_every_steps=20,"
            "checkpoint_every_steps=60,seed=0,data.seed=0")
MARGIN = 0.2  # clip top-1 from the export minus from scratch


def pretrain_export(dataset, workdir, steps=PRETRAIN_STEPS):
  """A short pretraining run (tests/test_learning.py's: tiny model, k = 1); its export."""
  # pylint: disable=g-import-not-at-top
  from avjax.pretrain import task as pretrain
  from avjax.configs import pretrain as pretrain_config_file
  config = pretrain_config_file.get_config(f"dataset={dataset},k=1,runlocal")
  config.data.update(num_frames=4, short_side=32, crop_size=32, hop=1024)
  config.optimizer.lr_peak = 5e-3
  config.update(batch_size=32, total_steps=steps, log_every_steps=50,
                checkpoint_every_steps=steps)
  config.evals.discrepancy = 0
  assert pretrain.train_and_evaluate(config, workdir) is not None
  return os.path.join(workdir, "export")


def random_export(export_dir, output, seed=1):
  """An export of the same architecture as `export_dir`, with random weights."""
  # pylint: disable=g-import-not-at-top
  import jax
  import ml_collections
  from avjax import checkpoint
  from avjax import fileio
  from avjax.models import av
  model_config = fileio.read_json(os.path.join(export_dir, checkpoint.EXPORT_CONFIG))
  model = av.build_model(ml_collections.ConfigDict(model_config))
  variables = av.init_variables(model, jax.random.key(seed), (1, 4, 32, 32, 3),
                                (1, 96, 150, 1))
  checkpoint.export_backbones(output, variables, model_config)
  return output


def downstream_top1(data, init, workdir, mode="linear", overrides=SCHEDULE):
  """Clip top-1 of split 1 of the UCF101-layout set after training on f from `init`."""
  # pylint: disable=g-import-not-at-top
  from avjax import config_args
  from avjax.downstream import finetune_all
  from avjax.downstream import task
  config = finetune_all.apply_overrides(config_args.load_config(
      f"configs/downstream/ucf101.py:data={data},split=1,mode={mode},init={init}"), overrides)
  return task.train_and_evaluate(config, workdir)["top1"]


def check_transfers(pretrained, scratch):
  """The test's assertion: starting from the export beats scratch by MARGIN."""
  assert pretrained - scratch >= MARGIN, (
      f"the export does not beat training from scratch by {MARGIN:.2f}: top-1 "
      f"{pretrained:.3f} vs {scratch:.3f}")


@pytest.fixture(scope="module")
def transfer_setup(tmp_path_factory):
  """The short pretraining run's export, the tiny downstream set (the pretraining set's look:
  no title artifacts, no grain) prepared, and the from-scratch top-1."""
  import helpers  # pylint: disable=g-import-not-at-top
  root = str(tmp_path_factory.mktemp("transfer"))
  dataset = helpers.make_synthetic_dataset(f"{root}/mini", "mini", movies=40, minutes=0.3)
  export = pretrain_export(dataset, f"{root}/pretrain")
  sd.generate_downstream("ucf101", f"{root}/ucf101", sizes=DOWNSTREAM, progress=False,
                         artifact_strength=0.0, grain=0.0)
  data = f"{root}/ucf101_prepared"
  downstream_prepare.prepare("ucf101", f"{root}/ucf101", data, fps=5, short_side=32,
                             progress=False)
  return dict(root=root, export=export, data=data,
              scratch=downstream_top1(data, "", f"{root}/scratch"))


@pytest.mark.slow
def test_a_short_pretraining_run_transfers_better_than_training_from_scratch(transfer_setup,
                                                                            tmp_path):
  s = transfer_setup
  check_transfers(downstream_top1(s["data"], s["export"], str(tmp_path / "run")), s["scratch"])


@pytest.mark.slow
def test_transfer_test_fails_with_a_random_export(transfer_setup, tmp_path):
  s = transfer_setup
  export = random_export(s["export"], str(tmp_path / "random_export"))
  top1 = downstream_top1(s["data"], export, str(tmp_path / "run"))
  with pytest.raises(AssertionError, match="does not beat training from scratch"):
    check_transfers(top1, s["scratch"])
