"""Encoders f, g, projection heads and AVModel: sizes, shapes, dtypes, conv factorization."""

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from avjax.evals import embed
from avjax.models import av, heads, layers, r2plus1d, resnet


def _abstract_variables(model, *input_shapes, **kwargs):
  inputs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in input_shapes]
  return jax.eval_shape(lambda *xs: model.init(jax.random.key(0), *xs, **kwargs), *inputs)


def _random_variables(model, *input_shapes, seed=0, **kwargs):
  """Variables of the right tree and shapes, drawn in numpy: compiling RNG-heavy
  `init` costs seconds on CPU, and random BN statistics test more than init's."""
  rng = np.random.default_rng(seed)

  def draw(path, x):
    name = path[-1].key
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, x.shape).astype(x.dtype)
    if name == "kernel":  # Keeps activations O(1) through the depth.
      return (rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)
    return (0.1 * rng.normal(size=x.shape)).astype(x.dtype)

  return jax.tree_util.tree_map_with_path(
      draw, _abstract_variables(model, *input_shapes, **kwargs))


def _apply_shape(model, variables, *input_shapes, **kwargs):
  inputs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in input_shapes]
  return jax.eval_shape(lambda v, *xs: model.apply(v, *xs, **kwargs), variables, *inputs)


def _count(params):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def _halve(n, times):
  """Output length after `times` stride-2 layers that keep ceil(n / 2)."""
  for _ in range(times):
    n = (n - 1) // 2 + 1
  return n


def _tiny_config(dtype="float32"):
  config = av.default_config()
  config.video.name = "r2plus1d_tiny"
  config.audio.name = "resnet_audio_tiny"
  config.dtype = dtype
  return config


@pytest.mark.parametrize("factory, input_shape, expected", [
    (r2plus1d.r2plus1d_18, (1, 4, 32, 32, 3), 31_300_125),
    (resnet.resnet18_audio, (1, 32, 32, 1), 11_170_240),
])
def test_parameter_counts(factory, input_shape, expected):
  variables = _abstract_variables(factory(), input_shape)
  assert _count(variables["params"]) == expected
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))


@pytest.mark.parametrize("factory, input_shape, width", [
    (r2plus1d.r2plus1d_18, (2, 16, 112, 112, 3), 512),
    (r2plus1d.r2plus1d_tiny, (2, 4, 32, 32, 3), 32),
    (r2plus1d.r2plus1d_tiny, (3, 8, 40, 40, 3), 32),
    (r2plus1d.r2plus1d_tiny, (1, 5, 33, 47, 3), 32),
])
def test_video_encoder_output_shape(factory, input_shape, width):
  model = factory()
  variables = _abstract_variables(model, input_shape)
  out = _apply_shape(model, variables, input_shape)
  n, t, h, w, _ = input_shape
  # Stem halves H, W; stages 2-4 halve T, H, W.
  assert out.shape == (n, _halve(t, 3), _halve(h, 4), _halve(w, 4), width)


@pytest.mark.parametrize("factory, input_shape, width", [
    (resnet.resnet18_audio, (2, 128, 100, 1), 512),
    (resnet.resnet_audio_tiny, (2, 32, 40, 1), 32),
    (resnet.resnet_audio_tiny, (3, 24, 64, 1), 32),
])
def test_audio_encoder_output_shape(factory, input_shape, width):
  model = factory()
  variables = _abstract_variables(model, input_shape)
  out = _apply_shape(model, variables, input_shape)
  n, f, t, _ = input_shape
  # Stem conv and max-pool halve both axes, then stages 2-4.
  assert out.shape == (n, _halve(f, 5), _halve(t, 5), width)


def test_midplanes_matches_torchvision():
  assert [r2plus1d.midplanes(i, p) for i, p in [(64, 64), (64, 128), (128, 128),
                                                 (128, 256), (256, 512), (512, 512)]] == [
                                                     144, 230, 288, 460, 921, 1152]


@pytest.mark.parametrize("feature_shape, kernel_size, hidden", [
    ((2, 2, 3, 3, 16), 1, None),
    ((2, 2, 3, 3, 16), 3, 8),
    ((3, 4, 5, 16), 1, None),
    ((3, 4, 5, 16), 3, 24),
])
def test_projection_head(feature_shape, kernel_size, hidden):
  head = heads.ProjectionHead(dim=12, hidden=hidden, kernel_size=kernel_size)
  variables = _random_variables(head, feature_shape)
  x = np.random.default_rng(1).normal(size=feature_shape).astype(jnp.bfloat16)
  z, _ = jax.jit(lambda v, x: head.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables, x)
  assert z.shape == (feature_shape[0], 12) and z.dtype == jnp.float32
  assert np.all(np.isfinite(z))
  k = (kernel_size,) * (len(feature_shape) - 2)
  assert variables["params"]["conv1"]["kernel"].shape == k + (16, hidden or 16)
  assert variables["params"]["conv2"]["kernel"].shape == k + (hidden or 16, 12)


@pytest.mark.slow
def test_av_model_embeddings_and_features():
  config = _tiny_config()
  config.embed_dim = 24
  model = av.build_model(config)
  video = np.random.default_rng(1).normal(size=(2, 4, 32, 32, 3)).astype(np.float32)
  audio = np.random.default_rng(2).normal(size=(2, 32, 40, 1)).astype(np.float32)
  variables = _random_variables(model, video.shape, audio.shape, train=False)
  assert set(variables["params"]) == {"video_encoder", "audio_encoder", "video_head", "audio_head"}

  pooled_and_heads = embed._embed  # pylint: disable=protected-access  # what evaluations run

  @jax.jit
  def run(variables, video, audio):
    train = model.apply(variables, video, audio, train=True, mutable=["batch_stats"])
    return train, model.apply(variables, video, audio, train=False), (
        model.apply(variables, video, method="embed_video"),
        model.apply(variables, audio, method="embed_audio"),
        model.apply(variables, video, audio, method=pooled_and_heads))

  ((z_video, z_audio), updates), evaluated, (e_video, e_audio, pooled) = run(
      variables, video, audio)
  f_video, f_audio = pooled["f"], pooled["g"]  # the evaluations' pooled features
  assert z_video.shape == z_audio.shape == (2, 24)
  assert z_video.dtype == z_audio.dtype == jnp.float32
  assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
      variables["batch_stats"])
  assert not np.allclose(z_video, evaluated[0])  # Batch statistics differ from running ones.
  np.testing.assert_allclose(e_video, evaluated[0], rtol=1e-6)
  np.testing.assert_allclose(e_audio, evaluated[1], rtol=1e-6)
  assert f_video.shape == f_audio.shape == (2, 32)
  assert f_video.dtype == f_audio.dtype == jnp.float32


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_compute_dtype_follows_config(dtype):
  config = _tiny_config(dtype)
  video, audio = (1, 4, 32, 32, 3), (1, 32, 40, 1)
  model = av.build_model(config)
  variables = _abstract_variables(model, video, audio, train=False)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  for kind, shape in [("video", video), ("audio", audio)]:
    encoder_variables = {c: variables[c][f"{kind}_encoder"] for c in variables}
    features = _apply_shape(av.build_encoder(kind, config), encoder_variables, shape)
    assert features.dtype == jnp.dtype(dtype)
  z_video, z_audio = _apply_shape(model, variables, video, audio, train=False)
  assert z_video.dtype == z_audio.dtype == jnp.float32


def test_build_encoder_matches_av_model_tree():
  config = _tiny_config()
  video, audio = (1, 4, 32, 32, 3), (1, 32, 40, 1)
  full = _abstract_variables(av.build_model(config), video, audio, train=False)
  for kind, shape in [("video", video), ("audio", audio)]:
    alone = _abstract_variables(av.build_encoder(kind, config), shape)
    for collection in ("params", "batch_stats"):
      assert (jax.tree.map(lambda x: x.shape, alone[collection]) ==
              jax.tree.map(lambda x: x.shape, full[collection][f"{kind}_encoder"]))


def test_default_config_widths_override_from_the_command_line():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  argv = ["prog", "--model.video.name=r2plus1d_tiny",
          "--model.video.stage_widths=(16, 32, 64, 128)"]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_dict("model", av.default_config(), flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  config = flag_values.model
  assert av.build_encoder("video", config).stage_widths == (16, 32, 64, 128)
  assert av.build_encoder("audio", config).stage_widths == (64, 128, 256, 512)


def test_encoder_overrides_from_config():
  config = _tiny_config()
  config.video.stage_widths = (8, 8, 16, 24)
  encoder = av.build_encoder("video", config)
  shape = (1, 4, 32, 32, 3)
  assert _apply_shape(encoder, _abstract_variables(encoder, shape), shape).shape[-1] == 24


def test_overrides_read_back_from_json_build_the_same_hashable_model():
  """config.json and an export's model_config.json hold tuples as lists; the model built
  from them is the one built from the run's config (jit takes it as a static argument)."""
  config = _tiny_config()
  config.video.stage_sizes, config.video.stage_widths = (1,), (8,)
  config.audio.stage_sizes, config.audio.stage_widths = (1,), (8,)
  again = ml_collections.ConfigDict(json.loads(config.to_json()))
  assert again.video.stage_sizes == [1]
  model = av.build_model(again)
  assert hash(model) == hash(av.build_model(config)) and model == av.build_model(config)


def test_bad_names_raise():
  config = _tiny_config()
  config.video.name = "r3d_18"
  with pytest.raises(ValueError, match=r"r3d_18.*r2plus1d_18.*r2plus1d_tiny"):
    av.build_model(config)
  config = _tiny_config()
  config.audio.name = "r2plus1d_18"  # A video encoder is no audio encoder.
  with pytest.raises(ValueError, match=r"resnet18_audio.*resnet_audio_tiny"):
    av.build_model(config)
  with pytest.raises(ValueError, match="kind"):
    av.build_encoder("text", config)


def _conv3d(x, kernel, strides, padding):
  return jax.lax.conv_general_dilated(
      x, kernel, strides, padding, dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
      precision=jax.lax.Precision.HIGHEST)


def test_factorized_convs_equal_3d_convs():
  """The frame-wise and (T, H*W) 2-D convs compute the (1,3,3) and (3,1,1) 3-D convs."""
  conv = functools.partial(nn.Conv, use_bias=False, dtype=jnp.float32,
                           precision=jax.lax.Precision.HIGHEST)
  norm = functools.partial(layers.BatchNorm, use_running_average=True, epsilon=1e-5)
  x = np.random.default_rng(1).normal(size=(2, 5, 9, 11, 3)).astype(np.float32)
  for stride in (1, 2):
    module = r2plus1d.Conv2Plus1D(mid=6, features=5, stride=stride, conv=conv, norm=norm)
    variables = _random_variables(module, x.shape)
    params, stats = variables["params"], variables["batch_stats"]

    @jax.jit
    def reference(x, params=params, stats=stats, stride=stride):
      y = _conv3d(x, params["spatial"]["kernel"][None], (1, stride, stride),
                  [(0, 0), (1, 1), (1, 1)])
      y = ((y - stats["bn"]["mean"]) / jnp.sqrt(stats["bn"]["var"] + 1e-5)
           * params["bn"]["scale"] + params["bn"]["bias"])
      return _conv3d(jax.nn.relu(y), params["temporal"]["kernel"][:, :, None],
                     (stride, 1, 1), [(1, 1), (0, 0), (0, 0)])

    out = jax.jit(module.apply)(variables, x)
    expected = reference(x)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_factorized_downsample_equals_strided_3d_conv():
  """Temporal subsampling + strided 1x1 frame conv is the 1x1x1 stride-2 3-D conv."""
  layer = nn.Conv(4, (1, 1), strides=(2, 2), padding=((0, 0), (0, 0)), use_bias=False,
                  precision=jax.lax.Precision.HIGHEST)
  x = np.random.default_rng(1).normal(size=(2, 5, 9, 10, 3)).astype(np.float32)
  kernel = np.random.default_rng(2).normal(size=(1, 1, 3, 4)).astype(np.float32)

  @jax.jit
  def both(x):
    out = r2plus1d.over_frames(lambda f: layer.apply({"params": {"kernel": kernel}}, f),
                               x[:, ::2])
    return out, _conv3d(x, kernel[None], (2, 2, 2), [(0, 0)] * 3)

  out, expected = both(x)
  assert out.shape == expected.shape == (2, 3, 5, 5, 4)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
