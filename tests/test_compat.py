"""Workdirs and exports written by earlier versions of avjax keep working.

tests/data/workdir_v1.tar.gz is a pretraining workdir (tiny model, 2 of its steps, the
checkpoint at step 2 and the export) written by avjax 0.1.0 before the package was laid
out anew (the trainer in avjax/train.py): it resumes, trains on and exports.
"""

import json
import os
import tarfile

import jax
import ml_collections
import numpy as np
import pytest

import tiny_dataset
from avjax import checkpoint
from avjax import pretrain
from avjax.models import av

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "workdir_v1.tar.gz")


@pytest.fixture()
def old_workdir(tmp_path):
  with tarfile.open(FIXTURE) as t:
    t.extractall(tmp_path, filter="data")
  return str(tmp_path / "workdir_v1")


def _config(workdir, dataset, **overrides):
  """The run's own config.json, pointed at a fresh copy of its (generated) dataset."""
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.data.dataset = [dataset]
  config.update(overrides)
  return config


def test_an_old_export_loads_into_the_encoders(old_workdir):
  variables, model_config = checkpoint.load_export(os.path.join(old_workdir, "export"))
  f = av.build_encoder("video", model_config)
  video = np.zeros((1, 4, 32, 32, 3), np.float32)
  out = f.apply({"params": variables["params"]["video_encoder"],
                 "batch_stats": variables["batch_stats"]["video_encoder"]}, video)
  assert np.all(np.isfinite(out))


@pytest.mark.slow
def test_an_old_run_resumes_trains_on_and_exports(old_workdir, tmp_path):
  dataset = str(tmp_path / "dataset")
  tiny_dataset.make_tiny_dataset(dataset)  # the run's data, generated again
  before = {int(json.loads(l)["step"]) for l in open(os.path.join(old_workdir,
                                                                   "metrics.jsonl"))}
  assert before == {1, 2}
  state = pretrain.train_and_evaluate(_config(old_workdir, dataset, total_steps=4),
                                      old_workdir)
  assert int(state["step"]) == 4
  losses = {}
  for line in open(os.path.join(old_workdir, "metrics.jsonl")):
    m = json.loads(line)
    losses[m["step"]] = m["loss"]
  assert sorted(losses) == [1, 2, 3, 4] and all(np.isfinite(list(losses.values())))
  assert checkpoint.Checkpointer(old_workdir, every_steps=1).latest_step() == 4
  variables, _ = checkpoint.load_export(os.path.join(old_workdir, "export"))
  np.testing.assert_array_equal(
      jax.tree.leaves(variables["params"]["video_encoder"])[0],
      np.asarray(jax.tree.leaves(state["params"]["video_encoder"])[0]))


def test_an_old_checkpoint_exports_like_the_old_code_did(old_workdir, tmp_path):
  old, old_config = checkpoint.load_export(os.path.join(old_workdir, "export"))
  assert checkpoint.export_workdir(old_workdir, str(tmp_path / "again"), step=2) == 2
  new, new_config = checkpoint.load_export(str(tmp_path / "again"))
  assert new_config == old_config
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, new),
               jax.tree.map(np.asarray, old))
