"""Fine-tuning and linear evaluation: view averaging, linear probe, init, runs, resume, table."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import helpers
from avjax import checkpoint
from avjax import metrics
from avjax import optim
from avjax.downstream import finetune_all
from avjax.downstream import model as finetune_model
from avjax.downstream import prepare as downstream_prepare
from avjax.downstream import task as finetune
from avjax.models import av
from avjax.models import convert



class Passthrough(nn.Module):
  """A fake model: its input is its output (the logits)."""

  @nn.compact
  def __call__(self, x, train=False):
    return x


def test_predictions_are_averaged_over_views():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((2, 30, 5)).astype(np.float32)
  got = finetune.average_view_predictions(jnp.asarray(logits))
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose(got, probs.mean(1), rtol=1e-5)


def test_eval_step_counts_clips_by_averaged_views_and_ignores_padding():
  # Clip 0: 9 of 10 views lean weakly to class 0, one is sure of class 1; the average of
  # the softmax picks 1 (right), while 9 of 10 single views are wrong.
  views = np.zeros((3, 10, 2), np.float32)
  views[0, :9] = [0.2, 0.0]
  views[0, 9] = [0.0, 10.0]
  views[1] = [3.0, 0.0]  # clip 1: every view says 0, the label is 0
  views[2] = [0.0, 5.0]  # padding: would count as right if it were counted
  batch = dict(audio=jnp.asarray(views), label=jnp.asarray([1, 0, 1]),
               mask=jnp.asarray([1.0, 1.0, 0.0]))
  state = dict(params={}, batch_stats={})
  out = finetune.eval_step(state, batch, model=Passthrough(), kind="audio")
  assert float(out["correct"]) == 2.0 and float(out["count"]) == 2.0
  assert float(out["view_correct"]) == pytest.approx(0.1 + 1.0)


class DenseEncoder(nn.Module):
  """A stand-in backbone without BatchNorm (micro-batches then change nothing)."""

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(8)(x)


class ProjectEncoder(nn.Module):
  """A stand-in backbone with parameters and BatchNorm statistics: Dense + BatchNorm."""
  width: int = 16

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Dense(self.width)(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)


def test_linear_probe_learns_planted_signal_and_keeps_backbone_frozen():
  dim, classes, n = 16, 4, 512
  rng = np.random.default_rng(0)
  labels = rng.integers(0, classes, n)
  means = 4.0 * np.eye(classes, dim)
  features = (means[labels] + rng.standard_normal((n, dim))).astype(np.float32)
  model = finetune_model.Classifier(ProjectEncoder(), num_classes=classes, frozen=True)
  config = ml_collections.ConfigDict(dict(mode="linear", optimizer=dict(
      momentum=0.9, weight_decay=1e-4, nesterov=False)))
  schedule = optax.constant_schedule(0.05)
  tx = optim.sgd(config, schedule, frozen=("encoder",))
  state = finetune.init_state(jax.random.key(0), None, model=model, tx=tx,
                              input_shape=(1, dim))
  before = jax.tree.map(np.asarray, (state["params"]["encoder"], state["batch_stats"]))
  step = jax.jit(lambda s, b: finetune.update_step(s, b, model=model, tx=tx,
                                                   schedule=schedule, kind="x"))
  train_x, train_y = features[:384], labels[:384]
  for _ in range(100):
    idx = rng.integers(0, len(train_x), 32)
    state, m = step(state, dict(x=train_x[idx], label=train_y[idx]))
  assert np.isfinite(float(m["loss"]))
  logits = model.apply({"params": state["params"], "batch_stats": state["batch_stats"]},
                       features[384:], train=False)
  accuracy = float(np.mean(np.argmax(logits, -1) == labels[384:]))
  assert accuracy >= 0.9, accuracy
  after = (state["params"]["encoder"], state["batch_stats"])
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, after))


def test_gradient_accumulation_matches_one_big_batch():
  from avjax import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  rng = np.random.default_rng(0)
  batch = dict(x=rng.standard_normal((32, 6)).astype(np.float32),
               label=rng.integers(0, 3, 32).astype(np.int32))
  model = finetune_model.Classifier(DenseEncoder(), num_classes=3)
  schedule = optax.constant_schedule(0.1)
  tx = optax.sgd(schedule, momentum=0.9)
  state = finetune.init_state(jax.random.key(0), None, model=model, tx=tx,
                              input_shape=(1, 6))
  outs = []
  for k in (1, 4):
    step = jax.jit(lambda s, b, k=k: finetune.update_step(
        s, b, model=model, tx=tx, schedule=schedule, kind="x", accum_steps=k),
                   in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)))
    outs.append(step(state, sharding.host_to_global(batch, mesh)))
  (one, m1), (four, m4) = outs
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               one["params"], four["params"])
  np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)
  np.testing.assert_allclose(m1["accuracy"], m4["accuracy"], rtol=1e-6)


# ---------------------------------------------------------------------------
# Initialization: export, torchvision-layout checkpoint, scratch.


# Two-stage tiny encoders: XLA's compile time on CPU dominates these tests.
SMALL = dict(stage_sizes=(1, 1), stage_widths=(8, 16))


def tiny_model_config():
  config = av.default_config()
  config.video = ml_collections.ConfigDict(dict(name="r2plus1d_tiny", **SMALL))
  config.audio = ml_collections.ConfigDict(dict(name="resnet_audio_tiny", **SMALL))
  config.embed_dim = 16
  config.dtype = "float32"
  return config


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
  """An export of a tiny AVModel, written by checkpoint.export_backbones as pretraining does.

  The variables have the model's exact tree and shapes (jax.eval_shape of its init) and
  random values: compiling the real init of both encoders costs more than the test.
  """
  model_config = tiny_model_config()
  model = av.build_model(model_config)
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(1), jnp.zeros((1, 4, 16, 16, 3)), jnp.zeros((1, 96, 16, 1)),
      train=False))
  rng = np.random.default_rng(1)

  def fill(path, x):
    name = path[-1].key
    if name in ("var", "scale"):
      return np.ones(x.shape, x.dtype)
    if name in ("mean", "bias"):
      return (0.1 * rng.standard_normal(x.shape)).astype(x.dtype)
    return (rng.standard_normal(x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)

  variables = jax.tree_util.tree_map_with_path(fill, abstract)
  out = str(tmp_path_factory.mktemp("export"))
  checkpoint.export_backbones(out, variables, model_config)
  return out


def _config(dataset, arg, overrides=""):
  return finetune_all.apply_overrides(helpers.downstream_config(dataset, arg), overrides)


def test_backbone_from_export_torch_checkpoint_or_scratch(export_dir, tmp_path):
  config = _config("esc50", f"runlocal,init={export_dir}")
  loaded = finetune_model.load_backbone(config, "audio")
  exported, model_config = checkpoint.load_export(export_dir)
  jax.tree.map(np.testing.assert_array_equal, loaded["params"],
               exported["params"]["audio_encoder"])
  assert model_config["audio"]["name"] == "resnet_audio_tiny"

  # The fresh state carries the loaded backbone; the classifier is new.
  model = finetune_model.build_classifier(config, 3, finetune_model.model_config_for(config, model_config))
  tx = optax.sgd(0.1)
  state = jax.jit(lambda b: finetune.init_state(jax.random.key(0), b, model=model, tx=tx,
                                                input_shape=(1, 96, 16, 1)))(loaded)
  jax.tree.map(np.testing.assert_array_equal, state["params"]["encoder"], loaded["params"])
  jax.tree.map(np.testing.assert_array_equal, state["batch_stats"]["encoder"],
               loaded["batch_stats"])
  assert state["params"]["classifier"]["kernel"].shape[-1] == 3

  # A torchvision-layout state dict (.npz) through the converter gives the same variables.
  npz = str(tmp_path / "resnet_tiny.npz")
  np.savez(npz, **convert.flax_to_torchvision(loaded, "resnet_audio_tiny", model_kwargs=SMALL))
  config = _config("esc50", "runlocal")
  config.model.audio = tiny_model_config().audio
  config.init_torch = npz
  from_torch = finetune_model.load_backbone(config, "audio")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), from_torch,
               jax.tree.map(np.asarray, loaded))

  # A checkpoint of another architecture is an error naming what does not fit.
  config.model.audio = ml_collections.ConfigDict(dict(name="resnet18_audio"))
  with pytest.raises(ValueError, match="missing key 'layer1.1.conv1.weight'"):
    finetune_model.load_backbone(config, "audio")
  wrong = jax.tree.map(lambda x: np.zeros(np.shape(x)[:-1] + (7,)), loaded)
  with pytest.raises(ValueError, match=r"(?s)my.npz: the backbone does not fit.*has shape"):
    finetune_model.check_backbone(wrong, loaded, "my.npz")

  # From scratch: no backbone.
  assert finetune_model.load_backbone(_config("esc50", "runlocal"), "audio") is None
  both = _config("esc50", f"runlocal,init={export_dir}")
  both.init_torch = npz
  with pytest.raises(ValueError, match="both set"):
    finetune_model.export_model_config(both)


# ---------------------------------------------------------------------------
# Runs.


def _read_metrics(run_dir):
  with open(os.path.join(run_dir, metrics.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_finetune_from_export_resumes_and_finetune_all_writes_the_table(export_dir,
                                                                         esc50_prepared, tmp_path):
  data = esc50_prepared
  workdir = str(tmp_path / "runs")
  run_dir = os.path.join(workdir, "esc50", "split1")
  overrides = "data.test_clips=10,grad_accum_steps=1"
  # The first run is interrupted after 2 of its 4 steps...
  config = _config("esc50", f"data={data},split=1,mode=finetune,init={export_dir},runlocal",
                   overrides)
  assert finetune.train_and_evaluate(config, run_dir, max_steps=2) is None
  assert [m["step"] for m in _read_metrics(run_dir)] == [2]
  assert not os.path.exists(os.path.join(run_dir, finetune.RESULTS))

  # ... and finetune_all resumes it from its checkpoint, finishes and tests it.
  summary = finetune_all.run_all(export_dir, {"esc50": data}, workdir,
                                 load_config=helpers.downstream_config, runlocal=True,
                                 splits={1}, overrides=overrides)
  assert [m["step"] for m in _read_metrics(run_dir)] == [2, 4]
  with open(os.path.join(run_dir, finetune.RESULTS)) as f:
    results = json.load(f)
  assert results["step"] == 4 and results["num_test"] == 2 and results["views_per_clip"] == 10
  assert 0.0 <= results["top1"] <= 1.0 and results["encoder"]["name"] == "resnet_audio_tiny"
  assert summary["datasets"]["esc50"]["splits"] == {"1": results["top1"]}
  with open(os.path.join(workdir, "results.md")) as f:
    table = f.read()
  assert "| Method | Arch. | pretraining dataset | HMDB51 | UCF101 | ESC50 |" in table
  assert f"| ESC50 | {100 * results['top1']:.1f} | – | – | – | – |" in table

  # A finished run is skipped on the next call.
  before = os.stat(os.path.join(run_dir, finetune.RESULTS)).st_mtime_ns
  finetune_all.run_all(export_dir, {"esc50": data}, workdir,
                       load_config=helpers.downstream_config, runlocal=True, splits={1},
                       overrides=overrides)
  assert os.stat(os.path.join(run_dir, finetune.RESULTS)).st_mtime_ns == before


@pytest.mark.slow
def test_linear_video_run_keeps_the_exported_backbone(export_dir, tmp_path):
  data = str(tmp_path / "ucf101_prepared")
  downstream_prepare.prepare("ucf101", helpers.make_ucf101(str(tmp_path / "ucf101")), data,
                             short_side=24, progress=False)
  config = _config("ucf101", f"data={data},mode=linear,init={export_dir},runlocal",
                   "total_steps=2,data.test_clips=10")
  run_dir = str(tmp_path / "run")
  results = finetune.train_and_evaluate(config, run_dir)
  assert results["views_per_clip"] == 30 and results["num_test"] == 2  # 10 clips x 3 crops
  assert results["mode"] == "linear"

  # Only the classifier moved: the backbone and its BatchNorm statistics are the export's.
  ckpt = checkpoint.Checkpointer(run_dir, every_steps=1)
  state, _ = ckpt.restore(None)
  ckpt.close()
  exported, _ = checkpoint.load_export(export_dir)
  jax.tree.map(np.testing.assert_array_equal, state["params"]["encoder"],
               exported["params"]["video_encoder"])
  jax.tree.map(np.testing.assert_array_equal, state["batch_stats"]["encoder"],
               exported["batch_stats"]["video_encoder"])


# ---------------------------------------------------------------------------
# Configs and the summary table.


@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51", "esc50"])
def test_configs_build(dataset):
  config = helpers.downstream_config(dataset, "split=2,mode=linear,init=/e")
  assert (config.split, config.mode, config.init) == (2, "linear", "/e")
  assert config.batch_size == 96 and config.optimizer.lr_peak == 0.2
  assert config.optimizer.warmup_epochs == 25 and config.optimizer.weight_decay == 1e-4
  assert config.num_epochs == {"ucf101": 150, "hmdb51": 200, "esc50": 200}[dataset]
  local = helpers.downstream_config(dataset, "runlocal")
  assert local.model[local.data.kind].name.endswith("tiny") and local.total_steps > 0
  with pytest.raises(ValueError, match="unknown config arg"):
    helpers.downstream_config(dataset, "splt=2")


def test_bad_mode_is_an_error(tmp_path):
  config = _config("esc50", "runlocal")
  config.mode = "probe"
  with pytest.raises(ValueError, match="config.mode='probe': must be one of"):
    finetune.train_and_evaluate(config, str(tmp_path))


def test_summary_table_layout():
  runs = [dict(dataset="hmdb51", split=s, top1=t, encoder=dict(name="r2plus1d_18"))
          for s, t in ((1, 0.60), (2, 0.62), (3, 0.64))]
  runs += [dict(dataset="esc50", split=f, top1=0.8 + 0.01 * f, encoder=dict(name="resnet18_audio"))
           for f in range(1, 6)]
  summary = finetune_all.summarize(runs, init="", name="scratch")
  assert summary["datasets"]["hmdb51"]["mean"] == pytest.approx(0.62)
  assert summary["datasets"]["esc50"]["mean"] == pytest.approx(0.83)
  table = finetune_all.markdown(summary)
  assert "| scratch | R(2+1)D-18 | none | 62.0 | – | 83.0 |" in table
  assert "| HMDB51 | 60.0 | 62.0 | 64.0 | – | – | 62.0 |" in table
  assert "| ESC50 | 81.0 | 82.0 | 83.0 | 84.0 | 85.0 | 83.0 |" in table
  with pytest.raises(ValueError, match="unknown dataset 'kinetics'"):
    finetune_all.parse_roots("kinetics=/x")
  assert finetune_all.parse_roots("ucf101=/a,esc50=/b") == {"ucf101": "/a", "esc50": "/b"}
