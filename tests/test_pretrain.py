"""Pretraining through the shared loop on a tiny dataset: export, resume, SIGTERM, NaN, sharding."""

import functools
import json
import logging
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from avjax import checkpoint
from avjax import loop
from avjax import metrics
from avjax import optim
from avjax.pretrain import task as pretrain
from avjax.pretrain import step as pretrain_step
from avjax import sharding
from avjax.configs import pretrain as pretrain_config_file
from avjax.data import pipeline
from avjax.models import av


def pretrain_config(dataset, **overrides):
  config = pretrain_config_file.get_config(f"dataset={dataset},runlocal")
  config.data = helpers.tiny_data_config(dataset)  # 4 frames, 32x32 crops, k=2
  config.batch_size = 16  # 8 groups: one per simulated device
  config.total_steps = 4
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.update(overrides)
  return config


def losses_by_step(workdir):
  """step -> loss from metrics.jsonl; a resumed run's lines replace earlier ones."""
  out = {}
  with open(os.path.join(workdir, metrics.METRICS_FILE), encoding="utf-8") as f:
    for line in f:
      m = json.loads(line)
      out[m["step"]] = m["loss"]
  return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  path = tmp_path_factory.mktemp("dataset")
  helpers.make_tiny_dataset(path)
  return str(path)


class _Records(logging.Handler):
  """Keeps the log records of a run."""

  def __init__(self):
    super().__init__()
    self.records = []

  def emit(self, record):
    self.records.append(record)


UNINTERRUPTED_LOG = _Records()


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  config = pretrain_config(dataset)
  root = logging.getLogger()
  level = root.level
  root.addHandler(UNINTERRUPTED_LOG)
  root.setLevel(logging.INFO)
  try:
    state = pretrain.train_and_evaluate(config, workdir)
  finally:
    root.removeHandler(UNINTERRUPTED_LOG)
    root.setLevel(level)
  return config, workdir, state


@pytest.mark.slow
def test_console_says_compile_then_one_line_per_step_with_an_eta(uninterrupted):
  _, _, state = uninterrupted
  assert int(state["step"]) == 4
  for_console = [r for r in UNINTERRUPTED_LOG.records if getattr(r, "console", True)]
  lines = [r.getMessage() for r in for_console if r.levelno >= logging.INFO]
  compiling = lines.index("compiling the update step...")
  assert lines[compiling + 1].startswith("compiled the update step and ran step 1 in ")
  steps = [l for l in lines if l.startswith("step ")]
  assert [l.split()[1] for l in steps] == ["1/4", "2/4", "3/4", "4/4"]
  # From the first step measured after the compile on, a rate and an ETA.
  assert steps[0].endswith("? samples/s  ETA ?")
  assert all("ETA ?" not in l and "? samples/s" not in l for l in steps[1:])
  # The parameter table goes to the log file only; the console gets one count per module.
  counts = [l for l in lines if l.startswith("parameters: ")]
  assert len(counts) == 1 and "video_encoder" in counts[0] and "audio_encoder" in counts[0]
  tables = [r for r in UNINTERRUPTED_LOG.records if "| Name" in r.getMessage()]
  assert tables and not any(getattr(r, "console", True) for r in tables)


@pytest.mark.slow
def test_run_logs_checkpoints_and_exports(uninterrupted):
  config, workdir, state = uninterrupted
  assert int(state["step"]) == 4
  losses = losses_by_step(workdir)
  assert sorted(losses) == [1, 2, 3, 4] and all(np.isfinite(list(losses.values())))
  assert json.load(open(os.path.join(workdir, "config.json")))["data"]["k"] == 2
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  assert checkpoint.Checkpointer(workdir, every_steps=2).latest_step() == 4

  # The export restores into the downstream video model (f alone) and computes exactly
  # the features of the trained AVModel's f.
  variables, model_config = checkpoint.load_export(os.path.join(workdir, "export"))
  assert set(variables["params"]) == {"video_encoder", "audio_encoder"}
  f = av.build_encoder("video", model_config)
  video = np.random.default_rng(0).normal(size=(2, 4, 32, 32, 3)).astype(np.float32)
  features = f.apply({"params": variables["params"]["video_encoder"],
                      "batch_stats": variables["batch_stats"]["video_encoder"]}, video)
  model = av.build_model(config.model)
  expected = model.apply({"params": state["params"], "batch_stats": state["batch_stats"]},
                         video, method="video_features")
  np.testing.assert_allclose(np.asarray(features).mean(axis=(1, 2, 3)), expected, rtol=1e-5,
                             atol=1e-6)


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_losses(uninterrupted, tmp_path):
  config, reference_dir, _ = uninterrupted
  # A run killed after step 2 leaves exactly what the reference run had saved at step 2.
  workdir = tmp_path / "killed"
  shutil.copytree(os.path.join(reference_dir, checkpoint.CHECKPOINT_DIR, "2"),
                  workdir / checkpoint.CHECKPOINT_DIR / "2")
  state = pretrain.train_and_evaluate(config, str(workdir))  # restarted in the same workdir
  assert int(state["step"]) == 4
  want, got = losses_by_step(reference_dir), losses_by_step(workdir)
  assert sorted(got) == [3, 4]
  np.testing.assert_allclose([got[3], got[4]], [want[3], want[4]], rtol=1e-5)


def with_batch_hook(monkeypatch, hook):
  """Makes the trainer's input call `hook(i, batch)` on the i-th batch it fetches."""
  make = pipeline.make_train_iterator

  class Hooked:

    def __init__(self, *args, **kwargs):
      self._it = make(*args, **kwargs)
      self.snippets_per_epoch = self._it.snippets_per_epoch
      self.sampler_position = self._it.sampler_position
      self._i = 0

    def __iter__(self):
      return self

    def __next__(self):
      batch = hook(self._i, next(self._it))
      self._i += 1
      return batch

    def close(self):
      self._it.close()

  monkeypatch.setattr(pipeline, "make_train_iterator", Hooked)


@pytest.mark.slow
def test_sigterm_saves_and_stops(dataset, tmp_path, monkeypatch):
  def signal_at_third(i, batch):
    if i == 2:  # while the loop fetches the batch of step 3
      os.kill(os.getpid(), signal.SIGTERM)
    return batch
  with_batch_hook(monkeypatch, signal_at_third)
  config = pretrain_config(dataset, total_steps=8, checkpoint_every_steps=100)
  # Stopped before the end of the schedule: no result, no export.
  assert pretrain.train_and_evaluate(config, str(tmp_path)) is None
  assert checkpoint.Checkpointer(tmp_path, every_steps=100).latest_step() == 3
  assert not os.path.exists(tmp_path / "export")


def step_parts(dataset):
  """(config, model, schedule, tx) of the tiny pretraining config."""
  config = pretrain_config(dataset)
  schedule = optim.make_schedule(config, 64)
  return (config, av.build_model(config.model), schedule,
          optim.adam(config, schedule))


def random_batch(rng, size):
  return dict(video=rng.normal(size=(size, 4, 32, 32, 3)).astype(np.float32),
              audio=rng.normal(size=(size, 96, 30, 1)).astype(np.float32))


@pytest.mark.slow
def test_eight_devices_match_one(dataset):
  config, model, schedule, tx = step_parts(dataset)
  rng = np.random.default_rng(0)
  batches = [random_batch(rng, 16) for _ in range(3)]

  def run(mesh):
    init = functools.partial(pretrain_step.init_state, model=model, tx=tx,
                             video_shape=(1, 4, 32, 32, 3), audio_shape=(1, 96, 30, 1))
    _, shardings = sharding.replicated_state(init, mesh)
    state = sharding.init_state(init, jax.random.key(0), shardings)
    step = sharding.jit_update(functools.partial(
        pretrain_step.update_step, model=model, tx=tx, schedule=schedule,
        loss_config=config.loss), mesh, shardings)
    losses = []
    for batch in batches:
      state, m = step(state, jax.device_put(batch, sharding.batch_sharding(mesh)))
      losses.append(float(m["loss"]))
    return losses, jax.device_get(state["params"])

  losses_8, params_8 = run(sharding.make_mesh())
  losses_1, params_1 = run(sharding.make_mesh(num_devices=1))
  np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params_8), jax.tree.leaves(params_1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_export_command_writes_the_backbones_of_a_checkpoint(uninterrupted, tmp_path):
  _, workdir, state = uninterrupted
  assert checkpoint.export_workdir(workdir, str(tmp_path / "exported"), step=2) == 2
  variables, _ = checkpoint.load_export(tmp_path / "exported")
  at_end, _ = checkpoint.load_export(os.path.join(workdir, "export"))
  assert set(variables["batch_stats"]) == {"video_encoder", "audio_encoder"}
  # Step 2's weights, not the final ones that training exported.
  leaf = lambda v: np.asarray(jax.tree.leaves(v["params"]["video_encoder"])[0])
  assert not np.allclose(leaf(variables), leaf(at_end))
  np.testing.assert_array_equal(leaf(at_end),
                                np.asarray(jax.tree.leaves(state["params"]["video_encoder"])[0]))
  with pytest.raises(FileNotFoundError, match="no config.json"):
    checkpoint.export_workdir(str(tmp_path), str(tmp_path / "x"))


@pytest.mark.slow
def test_remat_gives_the_same_step(dataset):
  config, model, schedule, tx = step_parts(dataset)
  batch = random_batch(np.random.default_rng(1), 4)
  state = pretrain_step.init_state(jax.random.key(0), model=model, tx=tx,
                           video_shape=(1, 4, 32, 32, 3), audio_shape=(1, 96, 30, 1))
  results = {}
  for remat in ("none", "convs"):
    step = jax.jit(lambda s, b, remat=remat: pretrain_step.update_step(
        s, b, model=model, tx=tx, schedule=schedule, loss_config=config.loss, remat=remat))
    results[remat] = jax.device_get(step(state, batch))
  (state_a, m_a), (state_b, m_b) = results["none"], results["convs"]
  np.testing.assert_allclose(m_a["loss"], m_b["loss"], rtol=1e-6)
  np.testing.assert_allclose(m_a["grad_norm"], m_b["grad_norm"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(state_a["params"]), jax.tree.leaves(state_b["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="model.remat='all'"):
    pretrain_step.update_step(state, batch, model=model, tx=tx, schedule=schedule,
                      loss_config=config.loss, remat="all")
