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
"""

import numpy as np
import pytest

from avjax import fileio
from avjax.pretrain import task as pretrain
from avjax.configs import pretrain as pretrain_config_file

from helpers import make_synthetic_dataset  # pylint: disable=g-bad-import-order

# A small "mini" set: 48 titles of ~18 s (5 snippets each), about 1/4 of them held out.
SIZES = dict(movies=48, shows=0, episodes=0, minutes=0.3)
STEPS = 150
MARGIN = 0.15  # event probe of f: learned minus the better random-init top-1


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
  assert probe["video"] - reference >= MARGIN, (
      f"f does not beat its random initialisation (the better of BatchNorm recalibrated, "
      f"{probe['random_bn']['video']:.3f}, and as initialised, {probe['random']['video']:.3f}) "
      f"by {MARGIN:.2f} on the held-out event probe: {probe['video']:.3f}")
  sep = entry["separation"]["S+ - S!="]
  assert sep["lo"] > 0, f"held-out S+ is not separated from S!=: {sep}"


@pytest.fixture(scope="module")
def mini_dataset(tmp_path_factory):
  return make_synthetic_dataset(str(tmp_path_factory.mktemp("mini")), "mini", **SIZES)


@pytest.mark.slow
def test_pretraining_learns_what_transfers(mini_dataset, tmp_path):
  workdir = str(tmp_path / "run")
  assert pretrain.train_and_evaluate(learning_config(mini_dataset), workdir) is not None
  check_learned(final_entry(workdir))


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
