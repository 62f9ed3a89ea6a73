"""Pretraining learns: a short run on the "mini" synthetic preset must beat its own random
initialisation on the held-out event probe of f (the video encoder) and separate held-out
S+ from S!=.

The baseline is the run's step-0 encoders, with their BatchNorm statistics recalibrated on
the probe's training snippets (the fair reference: a trained model's statistics come from
data) and as initialised (mean 0, variance 1), whichever probes better. The assertion is on f:
g reads the events' sounds well even at random initialisation, so only f can show
learning. The run is deterministic (fixed seeds, one synthetic set). A negative control,
the same run with audio paired to the wrong video (rolled by one place in every batch),
must fail the same assertions: a learning test that could not fail would fail it.

The same run's export is the transfer test's: linearly evaluated on a tiny synthetic
UCF101-layout set, it must beat training from scratch, and a random export must not.
"""

import os

import jax
import ml_collections
import numpy as np
import pytest

from avjax import checkpoint
from avjax import config_args
from avjax import fileio
from avjax.downstream import finetune_all
from avjax.downstream import prepare as downstream_prepare
from avjax.downstream import task as downstream_task
from avjax.models import av
from avjax.pretrain import task as pretrain
from avjax.configs import pretrain as pretrain_config_file
from avjax.synthetic import downstream as sd

from helpers import make_synthetic_dataset  # pylint: disable=g-bad-import-order

# A small "mini" set: 48 titles of ~18 s (5 snippets each), about 1/4 of them held out.
SIZES = dict(movies=48, shows=0, episodes=0, minutes=0.3)
STEPS = 150
LEARNING_MARGIN = 0.15  # event probe of f: learned minus the better random-init top-1
# Measured at 100 steps: f 0.83 against 0.42 (random init as initialised; 0.30
# recalibrated), S+ - S!= lower bound 3.5; the rolled control f 0.45, lower bound -0.08.
# At 150 steps f was 0.97. 100 steps are not enough for the transfer check: one suite run
# gave 0.58 from the export against 0.44 from scratch (+0.14, under TRANSFER_MARGIN).


def learning_config(dataset):
  """The test's run: tiny model, 4 frames at 32x32 (the preset's resolution), k = 1."""
  config = pretrain_config_file.get_config(f"dataset={dataset},k=1,runlocal")
  config.data.update(num_frames=4, short_side=32, crop_size=32, hop=1024)
  config.optimizer.lr_peak = 5e-3
  config.update(batch_size=32, total_steps=STEPS, log_every_steps=50,
                checkpoint_every_steps=STEPS)
  config.evals.discrepancy = STEPS
  # Not asserted here (tests/test_discrepancy.py covers them): left out for time.
  config.discrepancy.update(floor_rounds=0, title_probe=False)
  return config


def final_entry(workdir):
  return fileio.read_json(f"{workdir}/discrepancy.json")["steps"][-1]


def check_learned(entry):
  """The test's assertions on a run's final discrepancy entry."""
  probe = entry["probe"]
  reference = max(probe["random_bn"]["video"], probe["random"]["video"])
  assert probe["video"] - reference >= LEARNING_MARGIN, (
      f"f does not beat its random initialisation (the better of BatchNorm recalibrated, "
      f"{probe['random_bn']['video']:.3f}, and as initialised, {probe['random']['video']:.3f}) "
      f"by {LEARNING_MARGIN:.2f} on the held-out event probe: {probe['video']:.3f}")
  sep = entry["separation"]["S+ - S!="]
  assert sep["lo"] > 0, f"held-out S+ is not separated from S!=: {sep}"


@pytest.fixture(scope="module")
def mini_dataset(tmp_path_factory):
  return make_synthetic_dataset(str(tmp_path_factory.mktemp("mini")), "mini", **SIZES)


@pytest.fixture(scope="module")
def learned(mini_dataset, tmp_path_factory):
  """The test's run (its workdir)."""
  workdir = str(tmp_path_factory.mktemp("learned") / "run")
  assert pretrain.train_and_evaluate(learning_config(mini_dataset), workdir) is not None
  return workdir


@pytest.mark.slow
def test_pretraining_learns_what_transfers(learned):
  check_learned(final_entry(learned))


class _RolledPairs:
  """A training iterator whose audio is paired with the wrong video (rolled by one)."""

  def __init__(self, iterator):
    self._iterator = iterator

  def __getattr__(self, name):
    return getattr(self._iterator, name)

  def __iter__(self):
    return self

  def __next__(self):
    batch = dict(next(self._iterator))
    batch["audio"] = np.roll(batch["audio"], 1, axis=0)
    return batch


@pytest.mark.slow
def test_learning_test_fails_when_the_pairing_is_broken(mini_dataset, tmp_path, monkeypatch):
  make = pretrain.train_iterator
  monkeypatch.setattr(pretrain, "train_iterator", lambda *a, **k: _RolledPairs(make(*a, **k)))
  workdir = str(tmp_path / "rolled")
  assert pretrain.train_and_evaluate(learning_config(mini_dataset), workdir) is not None
  with pytest.raises(AssertionError):
    check_learned(final_entry(workdir))


# ---------------------------------------------------------------------------
# Transfer, end to end (slow): the learning test's export, evaluated on a tiny downstream
# set, beats the same model trained from scratch with the same schedule and seed; the same
# check fails when the export is replaced by a random one.
#
# The check is on linear evaluation (f frozen, a linear classifier trained on its pooled
# features). Measured as the test runs it: clip top-1 0.84 from the export (the learning
# test's 100 steps; 0.76 after 150) against 0.44 from scratch and 0.30 from a random
# export, i.e. +0.40 and -0.14 against TRANSFER_MARGIN. Exports of shorter runs on a
# 40-title set: 0.70 after 60 or 100 steps, 0.58 (+0.14, failing the check) after 40. With other fine-tuning seeds (100
# pretraining steps, threefry keys): +0.30 and +0.46 from the export, -0.08 and +0.10
# from a random one.
# Fine-tuning all of f was measured on the same set and is not asserted: a single run moves
# by about 12 points with the seed, and a random export did as well as the pretrained one
# (fine-tuned top-1 0.64, 0.58, 0.56 from the export, 0.42, 0.50, 0.66 from scratch, 0.52,
# 0.62, 0.62 from a random export, seeds 0-2). That comparison needs many paired seeds:
# the transfer table (launch/transfer.sh, docs/downstream.md) makes it.

DOWNSTREAM = sd.Sizes(classes=5, groups=6, clips_per_group=5, spans=2)  # 100 train, 50 test
# The schedule of the test: launch/transfer.sh's inputs, a shorter run at batch 16.
SCHEDULE = ("model.video.name=r2plus1d_tiny,model.audio.name=resnet_audio_tiny,"
            "model.dtype=float32,data.num_frames=4,data.fps=1.25,data.scale_min=32,"
            "data.scale_max=40,data.crop_size=32,data.test_short_side=32,"
            "data.shuffle_buffer=128,batch_size=16,eval_batch_size=16,total_steps=60,"
            "optimizer.lr_peak=0.05,optimizer.warmup_epochs=1,log_every_steps=20,"
            "checkpoint_every_steps=60,seed=0,data.seed=0")
TRANSFER_MARGIN = 0.2  # clip top-1 from the export minus from scratch


def random_export(export_dir, output, seed=1):
  """An export of the same architecture as `export_dir`, with random weights."""
  model_config = fileio.read_json(os.path.join(export_dir, checkpoint.EXPORT_CONFIG))
  model = av.build_model(ml_collections.ConfigDict(model_config))
  variables = av.init_variables(model, jax.random.key(seed), (1, 4, 32, 32, 3),
                                (1, 96, 150, 1))
  checkpoint.export_backbones(output, variables, model_config)
  return output


def downstream_top1(data, init, workdir, mode="linear", overrides=SCHEDULE):
  """Clip top-1 of split 1 of the UCF101-layout set after training on f from `init`."""
  config = finetune_all.apply_overrides(config_args.load_config(
      f"configs/downstream/ucf101.py:data={data},split=1,mode={mode},init={init}"), overrides)
  return downstream_task.train_and_evaluate(config, workdir)["top1"]


def check_transfers(pretrained, scratch):
  """The test's assertion: starting from the export beats scratch by TRANSFER_MARGIN."""
  assert pretrained - scratch >= TRANSFER_MARGIN, (
      f"the export does not beat training from scratch by {TRANSFER_MARGIN:.2f}: top-1 "
      f"{pretrained:.3f} vs {scratch:.3f}")


@pytest.fixture(scope="module")
def transfer_setup(learned, tmp_path_factory):
  """The learning test's export, the tiny downstream set (the pretraining set's look:
  no title artifacts, no grain) prepared, and the from-scratch top-1."""
  root = str(tmp_path_factory.mktemp("transfer"))
  export = os.path.join(learned, "export")
  sd.generate_downstream("ucf101", f"{root}/ucf101", sizes=DOWNSTREAM, progress=False,
                         artifact_strength=0.0, grain=0.0)
  data = f"{root}/ucf101_prepared"
  downstream_prepare.prepare("ucf101", f"{root}/ucf101", data, fps=5, short_side=32,
                             progress=False)
  return dict(export=export, data=data,
              scratch=downstream_top1(data, "", f"{root}/scratch"))


@pytest.mark.slow
def test_a_short_pretraining_run_transfers_better_than_training_from_scratch(transfer_setup,
                                                                            tmp_path):
  s = transfer_setup
  top1 = downstream_top1(s["data"], s["export"], str(tmp_path / "run"))
  print(f"\nclip top-1 after linear evaluation: from the export {top1:.3f}, from scratch "
        f"{s['scratch']:.3f}")
  check_transfers(top1, s["scratch"])


@pytest.mark.slow
def test_transfer_test_fails_with_a_random_export(transfer_setup, tmp_path):
  s = transfer_setup
  export = random_export(s["export"], str(tmp_path / "random_export"))
  top1 = downstream_top1(s["data"], export, str(tmp_path / "run"))
  print(f"\nclip top-1 from a random export {top1:.3f}, from scratch {s['scratch']:.3f}")
  with pytest.raises(AssertionError, match="does not beat training from scratch"):
    check_transfers(top1, s["scratch"])
