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

from avjax import checkpoint
from avjax.pretrain import task as pretrain
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


# The old export's f and g on fixed inputs (video [2, 4, 32, 32, 3] and audio [2, 96, 30, 1]
# drawn from np.random.default_rng(0), in that order): each output map averaged over all
# but its batch and channel axes, as the code that wrote the export computed them.
RECORDED = {
    "video": [[0.55474, 0.590793, 0.182233, 0.0, 0.298953, 0.527235, 0.543606, 0.506225],
              [0.306522, 0.343607, 0.042001, 0.0, 0.326209, 0.436955, 0.223167, 0.154681]],
    "audio": [[0.274634, 0.054873, 0.006345, 0.261934, 0.016628, 0.15159, 0.351719, 0.160249],
              [0.255885, 0.0, 0.228112, 0.213437, 0.0, 0.046476, 0.165584, 0.218414]],
}


def test_an_old_export_loads_into_the_encoders_and_computes_what_it_did(old_workdir):
  variables, model_config = checkpoint.load_export(os.path.join(old_workdir, "export"))
  rng = np.random.default_rng(0)
  inputs = dict(video=rng.normal(size=(2, 4, 32, 32, 3)).astype(np.float32),
                audio=rng.normal(size=(2, 96, 30, 1)).astype(np.float32))
  for kind, x in inputs.items():
    encoder = av.build_encoder(kind, model_config)
    out = np.asarray(jax.jit(encoder.apply)(
        {"params": variables["params"][f"{kind}_encoder"],
         "batch_stats": variables["batch_stats"][f"{kind}_encoder"]}, x))
    pooled = out.mean(axis=tuple(range(1, out.ndim - 1)))
    np.testing.assert_allclose(pooled, RECORDED[kind], rtol=1e-4, atol=2e-6, err_msg=kind)


@pytest.mark.slow
def test_an_old_run_resumes_trains_on_and_exports(old_workdir, wide_tiny_dataset):
  # The run's data format (helpers.make_tiny_dataset), with the titles its batches of 8
  # groups need now that a batch's titles are distinct.
  dataset = wide_tiny_dataset
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
