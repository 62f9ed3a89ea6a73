"""model.norm="fused" (avjax/models/fused_norm.py) against nn.BatchNorm: layer, encoders,
the update step (also under remat=convs and on 8 devices, with either norm), variables and
residual memory."""

import collections
import functools
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from avjax import sharding
from avjax.pretrain import step as pretrain_step
from avjax.bench import memory as step_memory
from avjax.models import av
from avjax.models import fused_norm
from avjax.models import layers
from avjax.models import r2plus1d
from avjax.models import resnet

LOSS = ml_collections.ConfigDict(dict(normalize=False, temperature=1.0))


def random_variables(model, *input_shapes, seed=0, **kwargs):
  """Variables of `model`'s tree drawn in numpy (fast; random BN statistics test more)."""
  inputs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in input_shapes]
  abstract = jax.eval_shape(lambda *xs: model.init(jax.random.key(0), *xs, **kwargs),
                            *inputs)
  rng = np.random.default_rng(seed)

  def draw(path, x):
    name = path[-1].key
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, x.shape).astype(x.dtype)
    if name == "kernel":  # Keeps activations O(1) through the depth.
      return (rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)
    return (0.1 * rng.normal(size=x.shape)).astype(x.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


def assert_trees_close(actual, expected, *, rtol, atol_scale, what):
  """Leafwise |actual - expected| <= atol_scale * max|expected leaf| + rtol * |expected|.

  Returns the largest error relative to its leaf's scale (for the report).
  """
  worst = 0.0
  paths = jax.tree_util.tree_leaves_with_path(expected)
  for (path, e), a in zip(paths, jax.tree.leaves(actual)):
    e, a = np.asarray(e, np.float32), np.asarray(a, np.float32)
    assert a.shape == e.shape, (what, jax.tree_util.keystr(path))
    scale = float(np.max(np.abs(e))) or 1.0
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol_scale * scale,
                               err_msg=f"{what} {jax.tree_util.keystr(path)}")
    worst = max(worst, float(np.max(np.abs(a - e))) / scale)
  return worst


def tiny_model_config(norm="flax", dtype="float32", remat="none"):
  """Two-stage tiny encoders (an identity block, a strided block with the downsample
  shortcut: every kind of BatchNorm call of the encoders), seconds to compile on CPU."""
  config = av.default_config()
  config.video.name = "r2plus1d_tiny"
  config.audio.name = "resnet_audio_tiny"
  for kind in ("video", "audio"):
    config[kind].stage_sizes = (1, 1)
    config[kind].stage_widths = (8, 16)
  config.embed_dim = 16
  config.dtype = dtype
  config.norm = norm
  config.remat = remat
  return config


# ---------------------------------------------------------------------------
# The layer.


def max_error(actual, expected):
  """Largest |actual - expected| over the leaves, each relative to its leaf's max |expected|."""
  worst = 0.0
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    e, a = np.asarray(e, np.float32), np.asarray(a, np.float32)
    worst = max(worst, float(np.max(np.abs(a - e))) / (float(np.max(np.abs(e))) or 1.0))
  return worst


# bf16: forward outputs within two bf16 roundings of Flax's. Gradients are compared with
# the float32 computation on the same (bf16-valued) inputs: Flax rounds BN's output to
# bf16 before the residual add and ReLU, the fused layer rounds once at the end, so a
# pre-activation within a rounding of 0 can take the ReLU's other branch in one of the
# two and move a channel's sums by a whole term. The fused layer must be within bf16
# tolerance of float32 and no further from it than Flax's bf16 layer is.
@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 1e-2)])
@pytest.mark.parametrize("relu, with_residual", [(False, False), (True, False), (True, True)])
def test_layer_matches_flax_batch_norm(dtype, tol, relu, with_residual):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(1.0, 2.0, size=(4, 3, 5, 5, 6)), dtype)
  residual = jnp.asarray(rng.normal(size=x.shape), dtype) if with_residual else None
  weights = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  params = {"scale": jnp.asarray(rng.uniform(0.5, 1.5, 6), jnp.float32),
            "bias": jnp.asarray(0.3 * rng.normal(size=6), jnp.float32)}
  stats = {"mean": jnp.asarray(rng.normal(size=6), jnp.float32),
           "var": jnp.asarray(rng.uniform(0.5, 2, 6), jnp.float32)}

  def run(cls, dtype):
    norm = cls(momentum=0.9, epsilon=1e-5, dtype=dtype)

    @jax.jit
    def train_and_eval(params, x, residual):
      def loss(params, x, residual):
        y, updates = norm.apply({"params": params, "batch_stats": stats}, x, residual,
                                relu=relu, use_running_average=False, mutable=["batch_stats"])
        return jnp.sum(y.astype(jnp.float32) * weights), (y, updates["batch_stats"])
      (_, (y, new_stats)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
          params, x, residual)
      evaluated = norm.apply({"params": params, "batch_stats": stats}, x, residual, relu=relu,
                             use_running_average=True)
      return y, new_stats, grads, evaluated
    cast = lambda a: None if a is None else a.astype(dtype)
    return train_and_eval(params, cast(x), cast(residual))

  expected, got = run(layers.BatchNorm, dtype), run(fused_norm.FusedBatchNorm, dtype)
  assert got[0].dtype == expected[0].dtype == dtype
  assert jax.tree.structure(got) == jax.tree.structure(expected)
  # Forward (train and eval) within roundings of the output dtype; running averages from
  # the same float32 formula.
  forward_tol = tol if dtype == jnp.float32 else 2 * 2.0**-8
  assert_trees_close(got[0], expected[0], rtol=forward_tol, atol_scale=forward_tol,
                     what="train output")
  assert_trees_close(got[3], expected[3], rtol=forward_tol, atol_scale=forward_tol,
                     what="eval output")
  assert_trees_close(got[1], expected[1], rtol=1e-6, atol_scale=1e-6, what="batch_stats")
  if dtype == jnp.float32:
    assert_trees_close(got[2], expected[2], rtol=tol, atol_scale=tol, what="gradients")
  else:
    exact = run(layers.BatchNorm, jnp.float32)[2]
    fused_error = assert_trees_close(got[2], exact, rtol=0, atol_scale=tol,
                                     what="gradients vs float32")
    assert fused_error <= max(max_error(expected[2], exact), tol / 4)


def test_layer_rejects_a_residual_of_another_shape():
  norm = fused_norm.FusedBatchNorm(use_running_average=False, name="bn2")
  x = jnp.ones((2, 3, 4))
  with pytest.raises(ValueError, match=r"bn2: residual shape \(2, 3, 5\)"):
    norm.init(jax.random.key(0), x, jnp.ones((2, 3, 5)))


# ---------------------------------------------------------------------------
# Encoders and the model.


def test_both_norms_have_the_same_variables():
  """Same tree, shapes and dtypes for the full-size model: checkpoints load into either."""
  trees = {}
  for norm in ("flax", "fused"):
    config = av.default_config()
    config.norm = norm
    model = av.build_model(config)
    trees[norm] = jax.eval_shape(
        functools.partial(model.init, train=False), jax.random.key(0),
        jnp.zeros((1, 16, 112, 112, 3)), jnp.zeros((1, 96, 300, 1)))
  as_spec = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)
  assert as_spec(trees["flax"]) == as_spec(trees["fused"])


def test_norm_config_switch():
  config = tiny_model_config("fused")
  assert av.default_config().norm == "flax"
  assert av.build_encoder("video", config).norm == "fused"
  assert av.build_encoder("audio", config).norm == "fused"
  old = config.to_dict()
  del old["norm"]  # a config.json written before the switch existed
  assert av.build_encoder("video", old).norm == "flax"
  config.norm = "torch"
  with pytest.raises(ValueError, match=r"'torch' \(model.norm\).*'flax', 'fused'"):
    av.build_model(config)


def relative_error(actual, expected):
  """||actual - expected|| / ||expected|| over all leaves together."""
  flat = lambda t: np.concatenate([np.ravel(np.asarray(x, np.float32)) for x in jax.tree.leaves(t)])
  a, e = flat(actual), flat(expected)
  return float(np.linalg.norm(a - e) / np.linalg.norm(e))


def run_encoder(factory, norm, dtype, variables, x):
  """(train features, new batch_stats, parameter gradients, eval features)."""
  model = factory(norm=norm, dtype=dtype)

  @jax.jit
  def run(params, x):
    def loss(params):
      y, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                               x, train=True, mutable=["batch_stats"])
      y = y.astype(jnp.float32)
      return jnp.sum(y * jnp.cos(jnp.arange(y.size).reshape(y.shape))), (y, updates)
    (_, (y, updates)), grads = jax.value_and_grad(loss, has_aux=True)(params)
    evaluated = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x)
    return y, updates["batch_stats"], grads, evaluated
  return run(variables["params"], x)


# As tiny_model_config's encoders.
TWO_STAGES = dict(stage_sizes=(1, 1), stage_widths=(8, 16))
ENCODERS = [
    (functools.partial(r2plus1d.r2plus1d_tiny, **TWO_STAGES), (3, 4, 16, 16, 3)),
    (functools.partial(resnet.resnet_audio_tiny, **TWO_STAGES), (3, 32, 24, 1)),
]
PARTS = ("features", "batch_stats", "gradients", "eval features")


@pytest.mark.slow
@pytest.mark.parametrize("factory, shape", ENCODERS, ids=["video", "audio"])
def test_encoders_match_flax(factory, shape):
  """float32: fused equals Flax within float32 rounding. bfloat16: features within bf16
  tolerance of Flax's, and against the float32 computation the fused encoder's error is
  of the size of Flax's own bf16 error (both are dominated by the bf16 conv outputs;
  gradients of a deep random net in bf16 are far from float32's in both)."""
  x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
  variables = random_variables(factory(), shape)
  exact = run_encoder(factory, "flax", jnp.float32, variables, x)
  fused_f32 = run_encoder(factory, "fused", jnp.float32, variables, x)
  errors = {part: assert_trees_close(g, e, rtol=1e-5, atol_scale=1e-5, what=part)
            for part, g, e in zip(PARTS, fused_f32, exact)}
  print(f"{factory.func.__name__} float32, fused vs flax, max error / leaf scale: {errors}")

  flax_bf16 = run_encoder(factory, "flax", jnp.bfloat16, variables, x)
  fused_bf16 = run_encoder(factory, "fused", jnp.bfloat16, variables, x)
  assert fused_bf16[3].dtype == flax_bf16[3].dtype == jnp.bfloat16
  report = {}
  for part, fused, flax, ref in zip(PARTS, fused_bf16, flax_bf16, exact):
    fused_error, flax_error = relative_error(fused, ref), relative_error(flax, ref)
    report[part] = dict(fused_vs_flax=round(relative_error(fused, flax), 4),
                        fused_vs_f32=round(fused_error, 4), flax_vs_f32=round(flax_error, 4))
    assert fused_error <= 1.5 * flax_error + 1e-3, (part, report[part])
  for part in ("features", "eval features"):
    assert report[part]["fused_vs_flax"] < 0.05, report
  assert report["batch_stats"]["fused_vs_flax"] < 1e-3, report
  print(f"{factory.func.__name__} bfloat16, relative L2 errors: {report}")


# ---------------------------------------------------------------------------
# The update step.


def capture_gradients():
  """An optimizer that leaves the parameters and keeps the gradients as its state."""
  return optax.GradientTransformation(
      init=lambda params: jax.tree.map(jnp.zeros_like, params),
      update=lambda grads, state, params=None: (jax.tree.map(jnp.zeros_like, grads), grads))


def step_results(model_config, variables, batch, mesh=None):
  """(loss, gradients, new batch_stats, grad_norm) of pretrain_step.update_step, jitted."""
  model = av.build_model(model_config)
  tx = capture_gradients()
  state = dict(step=jnp.zeros((), jnp.int32), params=variables["params"],
               batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]),
               rng=jax.random.key_data(jax.random.key(0)))
  kwargs = dict(model=model, tx=tx, schedule=lambda step: 0.0, loss_config=LOSS,
                remat=model_config.remat)
  if mesh is None:
    step = jax.jit(functools.partial(pretrain_step.update_step, **kwargs))
  else:
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), state)
    step = sharding.jit_update(functools.partial(pretrain_step.update_step, **kwargs), mesh,
                               shardings)
    batch = jax.device_put(batch, sharding.batch_sharding(mesh))
  new_state, m = jax.device_get(step(state, batch))
  return dict(loss=m["loss"], grads=new_state["opt_state"], batch_stats=new_state["batch_stats"],
              grad_norm=m["grad_norm"])


def random_batch(size, video_shape, audio_shape, seed=1):
  rng = np.random.default_rng(seed)
  return dict(video=rng.normal(size=(size,) + video_shape).astype(np.float32),
              audio=rng.normal(size=(size,) + audio_shape).astype(np.float32))


def assert_same_step(got, expected, *, loss_rtol, atol_scale, what):
  np.testing.assert_allclose(got["loss"], expected["loss"], rtol=loss_rtol, err_msg=what)
  np.testing.assert_allclose(got["grad_norm"], expected["grad_norm"], rtol=10 * atol_scale,
                             err_msg=what)
  return dict(
      loss=abs(float(got["loss"]) - float(expected["loss"])),
      grads=assert_trees_close(got["grads"], expected["grads"], rtol=0, atol_scale=atol_scale,
                               what=f"{what} gradients"),
      batch_stats=assert_trees_close(got["batch_stats"], expected["batch_stats"], rtol=0,
                                     atol_scale=atol_scale, what=f"{what} batch_stats"))


TINY_VIDEO, TINY_AUDIO = (4, 16, 16, 3), (32, 24, 1)


@pytest.fixture(scope="module")
def tiny_variables():
  return random_variables(av.build_model(tiny_model_config()), (1,) + TINY_VIDEO,
                          (1,) + TINY_AUDIO, train=False)


@pytest.fixture(scope="module")
def tiny_steps(tiny_variables):
  """One batch of 4 and the step's results for (norm, remat) in float32."""
  batch = random_batch(4, TINY_VIDEO, TINY_AUDIO)
  return batch, {(norm, remat): step_results(tiny_model_config(norm, remat=remat),
                                             tiny_variables, batch)
                 for norm, remat in (("flax", "none"), ("flax", "convs"), ("fused", "none"),
                                     ("fused", "convs"))}


@pytest.mark.slow
def test_fused_step_equals_flax_step_with_and_without_remat(tiny_steps):
  _, results = tiny_steps
  expected = results["flax", "none"]
  for remat in ("none", "convs"):
    errors = assert_same_step(results["fused", remat], expected, loss_rtol=1e-6,
                              atol_scale=2e-5, what=f"fused, remat={remat}")
    print(f"tiny step, fused remat={remat} vs flax: {errors}")


@pytest.mark.slow
def test_remat_gives_the_same_step(tiny_variables, tiny_steps):
  """remat=convs recomputes BatchNorm and ReLU in the backward pass: the same step."""
  batch, results = tiny_steps
  errors = assert_same_step(results["flax", "convs"], results["flax", "none"], loss_rtol=1e-6,
                            atol_scale=2e-5, what="flax, remat=convs")
  print(f"tiny step, flax remat=convs vs none: {errors}")
  with pytest.raises(ValueError, match="model.remat='all'"):
    step_results(tiny_model_config("flax", remat="all"), tiny_variables, batch)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["flax", "fused"])
def test_the_step_on_eight_devices_equals_one(norm, tiny_variables):
  """Statistics over the global batch: the sharded step computes the one-device step."""
  assert jax.device_count() == 8, "tests/conftest.py simulates 8 CPU devices"
  batch = random_batch(8, TINY_VIDEO, TINY_AUDIO)
  config = tiny_model_config(norm)
  one = step_results(config, tiny_variables, batch, sharding.make_mesh(num_devices=1))
  eight = step_results(config, tiny_variables, batch, sharding.make_mesh())
  assert_same_step(eight, one, loss_rtol=1e-6, atol_scale=2e-5, what=f"{norm}: 8 vs 1 devices")


@pytest.mark.slow
def test_step_memory_differentiates_the_update_steps_loss(tiny_variables, tiny_steps):
  batch, results = tiny_steps
  config = tiny_model_config("fused", remat="convs")
  loss = step_memory.loss_fn(av.build_model(config), LOSS, "convs")
  value, grads = jax.jit(jax.value_and_grad(loss))(
      tiny_variables["params"], tiny_variables["batch_stats"], batch["video"], batch["audio"])
  np.testing.assert_allclose(value, results["fused", "convs"]["loss"], rtol=1e-6)
  assert_trees_close(grads, results["fused", "convs"]["grads"], rtol=0, atol_scale=1e-6,
                     what="gradients")


# ---------------------------------------------------------------------------
# Residual memory.


@pytest.mark.slow
def test_fused_keeps_no_float32_activations():
  config = ml_collections.ConfigDict(dict(model=tiny_model_config(dtype="bfloat16"),
                                             loss=LOSS))
  r = step_memory.measure(config, TINY_VIDEO, TINY_AUDIO)
  rows = {(row["norm"], row["remat"]): row for row in r["rows"]}
  flax, fused = rows["flax", "none"], rows["fused", "none"]
  # nn.BatchNorm keeps activation-sized float32 (x - mean, x cast) and bool ReLU masks.
  assert flax["per_sample_by_dtype"]["float32"] > flax["per_sample_by_dtype"]["bfloat16"]
  assert flax["per_sample_by_dtype"].get("bool", 0) > 0
  # The fused layer: the per-sample float32 and bool left are the heads' (nn.BatchNorm,
  # nn.relu) alone, and the whole is well under half of Flax's.
  for dtype in ("float32", "bool"):
    assert (fused["per_sample_by_dtype"].get(dtype, 0)
            < 0.1 * flax["per_sample_by_dtype"][dtype]), dtype
  assert fused["per_sample_bytes"] < 0.45 * flax["per_sample_bytes"]
  # remat=convs keeps the conv outputs (+ the video input) with either norm.
  assert rows["fused", "convs"]["per_sample_bytes"] == rows["flax", "convs"]["per_sample_bytes"]
  assert rows["fused", "convs"]["per_sample_bytes"] < fused["per_sample_bytes"]
  assert "| fused | convs |" in step_memory.to_markdown(r)


def _count_ops(jaxpr, counts):
  for eqn in jaxpr.eqns:
    counts[eqn.primitive.name] += 1
    for sub in jax.core.jaxprs_in_params(eqn.params):
      _count_ops(sub, counts)
  return counts


def test_remat_convs_saves_the_fused_statistics():
  """Under remat=convs the fused layers' per-channel statistics are kept, so the backward
  pass recomputes no statistics of theirs (Flax's BatchNorm recomputes all of its)."""
  config = tiny_model_config("fused", dtype="bfloat16", remat="convs")
  found = step_memory.residuals(config, LOSS, (2,) + TINY_VIDEO, (2,) + TINY_AUDIO)
  named = [r for r in found if r["source"] == "name"]
  model = av.build_model(config)
  video, audio = (jax.ShapeDtypeStruct((2,) + s, jnp.float32) for s in (TINY_VIDEO, TINY_AUDIO))
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                             video, audio)
  encoder_norms = sum(len(jax.tree.leaves(variables["batch_stats"][e])) // 2
                      for e in ("video_encoder", "audio_encoder"))
  # Two vectors (mean, 1/sigma) for each BatchNorm of the encoders.
  assert len(named) == 2 * encoder_norms
  assert all(r["dtype"] == "float32" and len(r["shape"]) == 1 for r in named)

  rsqrts = {}
  for norm in ("flax", "fused"):
    for remat in ("none", "convs"):
      config = tiny_model_config(norm, dtype="bfloat16", remat=remat)
      loss = step_memory.loss_fn(av.build_model(config), LOSS, remat)
      jaxpr = jax.make_jaxpr(jax.grad(loss))(variables["params"], variables["batch_stats"],
                                             video, audio).jaxpr
      rsqrts[norm, remat] = _count_ops(jaxpr, collections.Counter())["rsqrt"]
  heads_norms = 2  # nn.BatchNorm in each projection head, recomputed under remat
  assert rsqrts["flax", "convs"] - rsqrts["flax", "none"] == encoder_norms + heads_norms
  assert rsqrts["fused", "convs"] - rsqrts["fused", "none"] == heads_norms


# ---------------------------------------------------------------------------
# The full-size model.


@pytest.mark.slow
def test_full_size_step_fused_equals_flax():
  """r2plus1d_18 + resnet18_audio + heads, float32, batch 2 (smaller inputs than the
  paper's to keep CPU time down; every layer and width as in the paper model)."""
  video, audio = (8, 64, 64, 3), (96, 64, 1)
  config = av.default_config()
  config.dtype = "float32"
  variables = random_variables(av.build_model(config), (1,) + video, (1,) + audio,
                               train=False)
  batch = random_batch(2, video, audio)
  expected = step_results(config, variables, batch)
  for remat in ("none", "convs"):
    config = av.default_config()
    config.update(dict(dtype="float32", norm="fused", remat=remat))
    got = step_results(config, variables, batch)
    errors = assert_same_step(got, expected, loss_rtol=1e-5, atol_scale=1e-4,
                              what=f"full size, fused, remat={remat}")
    print(f"full-size step, fused remat={remat} vs flax: {errors}")


@pytest.mark.slow
def test_benchmark_memory_flag_records_the_table(tmp_path):
  """`python -m avjax.benchmark step --memory --record` end to end, tiny model, no TF."""
  record = tmp_path / "benchmarks.md"
  record.write_text("# avjax benchmarks\n\n## Training step\n\nkept\n")
  code = ("import sys, runpy\n"
          "sys.argv = ['avjax.benchmark', 'step', '--memory', '--record',\n"
          f"            '--record_file={record}', '--workdir={tmp_path}',\n"
          "            '--config=configs/step_benchmark.py:runlocal']\n"
          "try:\n"
          "  runpy.run_module('avjax.benchmark', run_name='__main__')\n"
          "except SystemExit as e:\n"
          "  assert not e.code, e.code\n"
          "bad = [m for m in ('tensorflow', 'clu') if m in sys.modules]\n"
          "assert not bad, bad\n")
  root = pathlib.Path(__file__).parent.parent
  env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)
  text = record.read_text()
  assert "## Training step\n\nkept" in text  # the timing section is left alone
  section = text[text.index(f"## {step_memory.TITLE}"):]
  # The section names the command that regenerates it, --record flags left out.
  assert ("with `python -m avjax.benchmark step --memory --workdir="
          in section.splitlines()[2]), section.splitlines()[2]
  assert "--record" not in section.splitlines()[2]
  for norm in ("flax", "fused"):
    for remat in ("none", "convs"):
      assert f"| {norm} | {remat} | **" in section
  result = json.loads((tmp_path / "step_memory.json").read_text())
  assert result["video_encoder"] == "r2plus1d_tiny" and len(result["rows"]) == 4
