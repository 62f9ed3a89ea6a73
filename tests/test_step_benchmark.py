"""Step benchmark end to end on CPU, the FLOP counter against hand counts, and the
collective pattern of the compiled update step on 8 simulated devices."""

import json
import pathlib
import subprocess
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from avjax.bench import flops
from avjax.bench import hlo as hlo_lib
from avjax.bench import step as step_benchmark
from avjax.configs import step_benchmark as step_config
from avjax.models import av
from avjax.models import layers
from avjax.models import r2plus1d


def tiny_config():
  """Two-stage tiny encoders on tiny inputs: seconds to compile on CPU."""
  config = step_config.get_config("runlocal")
  for kind in ("video", "audio"):
    config.model[kind].stage_sizes = (1, 1)
    config.model[kind].stage_widths = (8, 16)
  config.model.embed_dim = 16
  config.data.update(dict(num_frames=4, crop_size=32, mel_bins=32, audio_frames=48))
  config.warmup_steps = 1
  return config


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  """One end-to-end run of the benchmark on the 8 simulated devices (one compile)."""
  assert jax.device_count() == 8, "tests/conftest.py simulates 8 CPU devices"
  workdir = tmp_path_factory.mktemp("step")
  flags_values = types.SimpleNamespace(config=tiny_config(), batch=1, steps=3, record=False,
                                       workdir=str(workdir))
  markdown = step_benchmark.run(flags_values)
  return markdown, json.loads((workdir / "step.json").read_text())


# ---------------------------------------------------------------------------
# End to end.


@pytest.mark.slow
def test_benchmark_runs_and_reports_sane_numbers(bench):
  markdown, r = bench
  n = jax.device_count()
  assert r["devices"] == n and r["global_batch"] == n
  assert r["steps"] == 3
  assert 0 < r["step_time_p10_s"] <= r["step_time_s"] <= r["step_time_p90_s"]
  assert r["samples_per_s"] == pytest.approx(n / r["step_time_s"])
  assert r["compile_s"] > 0 and r["tflops_per_device"] > 0
  assert np.isfinite(r["loss"])
  assert r["video_shape"] == [4, 32, 32, 3] and r["audio_shape"] == [32, 48, 1]
  # The differentiated step multiplies a little less than 3x forward: no input gradient
  # for the stems. XLA's own count is of the same order.
  assert 0.8 * r["analytic_gflop_per_sample"] < r["jaxpr_gflop_per_sample"] \
      <= r["analytic_gflop_per_sample"] * 1.01
  if r["xla_gflop_per_sample"] is not None:
    assert 0.5 < r["xla_gflop_per_sample"] / r["analytic_gflop_per_sample"] < 2
  for field in ("samples/s", "step time", "compile time", "peak device memory", "TFLOP/s",
                "all-reduce"):
    assert field in markdown


# What an accelerator host has (docs: ENVIRONMENT): JAX, Flax, Optax, Orbax, chex, absl,
# PyYAML, numpy and torch, and ml_collections, carried as a wheel (benchmarks/run_gpu.sh).
ACCELERATOR_HOST = {"jax", "jaxlib", "flax", "optax", "orbax", "chex", "absl", "yaml", "numpy",
                    "torch", "torchvision", "ml_collections"}
# The step benchmark: its command, the two `step` benchmarks and the config file the command
# reads; not the other benchmarks, which the command imports only when they run.
STEP_ROOTS = ("avjax.benchmark", "avjax.cli.benchmark", "avjax.bench.step",
              "avjax.bench.memory", "avjax.configs.step_benchmark")
OTHER_BENCHMARKS = ("avjax.bench.ingest", "avjax.bench.ingest_beam", "avjax.bench.input",
                    "avjax.bench.scenes")


def test_every_module_the_step_benchmark_reaches_imports_only_what_an_accelerator_host_has():
  reached, outside, todo = set(), [], list(STEP_ROOTS)
  while todo:
    module = todo.pop()
    if module in reached:
      continue
    reached.add(module)
    for imp in helpers.imports_of(module):
      if imp.target in OTHER_BENCHMARKS:
        continue
      if imp.target in helpers.MODULES:
        todo.append(imp.target)
      elif not imp.optional and not imp.target.startswith("avjax"):
        top = imp.target.split(".")[0]
        if top not in sys.stdlib_module_names and top not in ACCELERATOR_HOST:
          outside.append(f"{helpers.MODULES[module]}:{imp.line}: {imp.target}")
  assert "avjax.pretrain.step" in reached and "avjax.validate" in reached
  assert not outside, "\n".join(outside)


def test_the_step_benchmark_imports_without_tensorflow_clu_tqdm_or_matplotlib():
  # A host without them, simulated: importing one of them fails, as it would there.
  code = ("import sys\n"
          "for name in ('tensorflow', 'tensorflow_datasets', 'tensorboard', 'clu', 'tqdm', "
          "'matplotlib', 'google_crc32c', 'av', 'PIL'):\n"
          "  sys.modules[name] = None\n"
          "import avjax.cli.benchmark, avjax.bench.step, avjax.bench.memory, avjax.console\n"
          "from avjax import config_args\n"
          "config_args.load_config('configs/step_benchmark.py:runlocal')\n"
          "avjax.console.setup()\n"
          "bar = avjax.console.progress(range(3), total=3)\n"
          "assert list(bar) == [0, 1, 2]\n")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=helpers.ROOT, timeout=300)


# ---------------------------------------------------------------------------
# FLOP counter.


class TinyConvNet(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3), padding="SAME")(x))              # (2, 8, 8, 4)
    x = nn.Conv(8, (3, 3), strides=(2, 2), padding="SAME")(x)        # (2, 4, 4, 8)
    x = nn.Conv(8, (1, 1), feature_group_count=2)(x)                 # grouped, (2, 4, 4, 8)
    return nn.Dense(5)(x.reshape(x.shape[0], -1))                    # (2, 5)


def test_flops_of_a_tiny_conv_net_match_a_hand_count():
  found = flops.layers(TinyConvNet(), (2, 8, 8, 3))
  hand = [2 * 8 * 8 * 4 * (3 * 3 * 3),     # outputs x window x input channels
          2 * 4 * 4 * 8 * (3 * 3 * 4),
          2 * 4 * 4 * 8 * (1 * 1 * 8 // 2),
          2 * 128 * 5]
  assert [l.macs for l in found] == hand
  assert [l.kind for l in found] == ["conv", "conv", "conv", "dense"]
  assert found[1].out_shape == (2, 4, 4, 8) and found[1].kernel == (3, 3)
  assert flops.forward_flops(found) == 2 * sum(hand)
  assert flops.train_flops(found) == 6 * sum(hand)
  # The jaxpr of the forward pass multiplies exactly as much.
  model = TinyConvNet()
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  assert flops.jaxpr_flops(jax.make_jaxpr(model.apply)(params, x)) == 2 * sum(hand)


def test_flops_of_one_factorized_r2plus1d_block_match_a_hand_count():
  conv = nn.Conv
  norm = lambda name: layers.BatchNorm(use_running_average=True, name=name)
  block = r2plus1d.BasicBlock(planes=8, stride=2, conv=conv, norm=norm)
  x_shape = (1, 4, 8, 8, 4)  # N, T, H, W, C
  mid = r2plus1d.midplanes(4, 8)
  assert mid == 14  # 4*8*27 // (4*9 + 3*8)
  found = flops.layers(block, x_shape)
  hand = {
      # conv1: (1,3,3) stride 2 over 4 frames -> 4x4x4 outputs x mid, window 9 x 4 in.
      "conv1/spatial": 4 * 4 * 4 * mid * 9 * 4,
      # (3,1,1) stride 2 over T: 2x(4*4) outputs x 8, window 3 x mid in.
      "conv1/temporal": 2 * 16 * 8 * 3 * mid,
      # conv2: stride 1, T'=2.
      "conv2/spatial": 2 * 4 * 4 * mid * 9 * 8,
      "conv2/temporal": 2 * 16 * 8 * 3 * mid,
      # 1x1x1 stride-2 shortcut: 2 frames x 4x4 x 8 outputs, 4 in.
      "downsample_conv": 2 * 4 * 4 * 8 * 4,
  }
  assert {l.path: l.macs for l in found} == hand
  total = sum(hand.values())
  assert flops.forward_flops(found) == 2 * total

  # The differentiated block (gradients w.r.t. parameters only) skips the input gradient
  # of the two convs that read x: 3 x forward minus those.
  x = jnp.ones(x_shape)
  variables = jax.eval_shape(block.init, jax.random.key(0), x)
  loss = lambda p, stats: jnp.sum(block.apply({"params": p, "batch_stats": stats}, x))
  jaxpr = jax.make_jaxpr(jax.grad(loss))(variables["params"], variables["batch_stats"])
  skipped = hand["conv1/spatial"] + hand["downsample_conv"]
  assert flops.jaxpr_flops(jaxpr) == 3 * 2 * total - 2 * skipped


# ---------------------------------------------------------------------------
# Collectives of the compiled step on 8 simulated devices.


def _nbytes(x):
  return int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize


@pytest.mark.slow
def test_compiled_step_all_reduces_gradients_and_gathers_embeddings(bench):
  _, r = bench
  config = tiny_config()
  model = av.build_model(config.model)
  video_shape, audio_shape = step_benchmark.input_shapes(config, 1)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(video_shape),
                                                jnp.zeros(audio_shape), train=False))
  params = jax.tree.leaves(variables["params"])
  param_bytes = sum(_nbytes(p) for p in params)
  stats_bytes = sum(_nbytes(p) for p in jax.tree.leaves(variables["batch_stats"]))
  b, d = r["global_batch"], config.model.embed_dim
  found = [dict(c, shapes=[(t, tuple(s)) for t, s in c["shapes"]]) for c in r["collective_ops"]]
  all_reduces = [c for c in found if c["op"] == "all-reduce"]
  all_gathers = [c for c in found if c["op"] == "all-gather"]

  # Gradients: every conv kernel's gradient is all-reduced exactly once (XLA may combine
  # several into one tuple all-reduce); the bytes are the parameters' plus small extras
  # (BatchNorm statistics over the global batch, forward and backward; the embeddings'
  # cotangents; the loss and metrics).
  kernels = sorted(tuple(p.shape) for p in params if p.ndim >= 3)
  reduced = sorted(shape for c in all_reduces for _, shape in c["shapes"] if len(shape) >= 3)
  assert reduced == kernels
  total = sum(c["bytes"] for c in all_reduces)
  assert param_bytes <= total <= param_bytes + 8 * stats_bytes + 4 * b * d * 4 + 4096
  assert len(all_reduces) < 4 * len(params)
  assert r["collectives"]["all-reduce"] == [len(all_reduces), total]

  # The loss runs over the global batch: an embedding matrix (B, d) is all-gathered.
  assert any(("f32", (b, d)) in c["shapes"] for c in all_gathers)
  # Parameters stay replicated: nothing of their shapes is gathered, and all gathers
  # together are small next to the parameters.
  gathered = {shape for c in all_gathers for _, shape in c["shapes"]}
  assert not gathered & {tuple(p.shape) for p in params if p.ndim >= 2}
  assert sum(c["bytes"] for c in all_gathers) < param_bytes / 10
  assert not [c for c in found if c["op"] == "reduce-scatter"]


def test_collective_parser_reads_tuples_and_async_pairs():
  hlo = """
  %all-reduce.1 = (f32[3,3,4,8]{3,2,1,0}, bf16[16]{0}, /*index=2*/f32[]) all-reduce(%a, %b, %c)
  %ag = (f32[2,16]{1,0}, f32[16,16]{1,0}) all-gather-start(f32[2,16]{1,0} %z), dimensions={0}
  %agd = f32[16,16]{1,0} all-gather-done((f32[2,16]{1,0}, f32[16,16]{1,0}) %ag)
  ROOT %ar2 = f32[8]{0} all-reduce-start(f32[8]{0} %x), to_apply=%add
  """
  found = hlo_lib.collectives(hlo)
  assert [c["op"] for c in found] == ["all-reduce", "all-gather", "all-reduce"]
  assert found[0]["bytes"] == 3 * 3 * 4 * 8 * 4 + 16 * 2 + 4
  assert found[1]["shapes"] == [("f32", (16, 16))] and found[1]["bytes"] == 1024
  assert hlo_lib.collective_summary(hlo) == {"all-reduce": (2, 1188 + 32),
                                                    "all-gather": (1, 1024)}


def test_torch_reference_says_what_it_needs_when_torch_is_missing():
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    pytest.skip("torch is installed here")
  except ImportError:
    pass
  p = subprocess.run([sys.executable, "benchmarks/peer_torch.py", "--batch=1"],
                     capture_output=True, text=True, check=False,
                     cwd=pathlib.Path(__file__).parent.parent)
  assert p.returncode != 0 and "needs PyTorch and torchvision" in p.stderr
