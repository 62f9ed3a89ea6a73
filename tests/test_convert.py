"""Weight conversion between torchvision state dicts and the Flax encoders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.models import convert

# Well-known torchvision keys and shapes. R(2+1)D midplanes
# (cin*cout*27)//(cin*9 + 3*cout): (64,64)->144, (64,128)->230, (128,128)->288,
# (128,256)->460, (256,256)->576, (256,512)->921, (512,512)->1152.
R2PLUS1D_SAMPLE = {
    "stem.0.weight": (45, 3, 1, 7, 7),
    "stem.1.weight": (45,),
    "stem.1.running_var": (45,),
    "stem.3.weight": (64, 45, 3, 1, 1),
    "stem.4.bias": (64,),
    "layer1.0.conv1.0.0.weight": (144, 64, 1, 3, 3),
    "layer1.0.conv1.0.1.running_mean": (144,),
    "layer1.0.conv1.0.3.weight": (64, 144, 3, 1, 1),
    "layer1.0.conv1.1.weight": (64,),
    "layer1.0.conv2.0.0.weight": (144, 64, 1, 3, 3),
    "layer1.0.conv2.1.bias": (64,),
    "layer2.0.conv1.0.0.weight": (230, 64, 1, 3, 3),
    "layer2.0.conv1.0.3.weight": (128, 230, 3, 1, 1),
    "layer2.0.conv2.0.0.weight": (230, 128, 1, 3, 3),  # midplanes reused in conv2.
    "layer2.0.conv2.0.3.weight": (128, 230, 3, 1, 1),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
    "layer2.0.downsample.1.running_var": (128,),
    "layer2.1.conv1.0.0.weight": (288, 128, 1, 3, 3),
    "layer3.0.conv1.0.0.weight": (460, 128, 1, 3, 3),
    "layer3.1.conv2.0.0.weight": (576, 256, 1, 3, 3),
    "layer4.0.conv1.0.0.weight": (921, 256, 1, 3, 3),
    "layer4.0.conv2.0.0.weight": (921, 512, 1, 3, 3),
    "layer4.1.conv2.0.3.weight": (512, 1152, 3, 1, 1),
    "layer4.1.conv2.1.weight": (512,),
}
RESNET18_SAMPLE = {
    "conv1.weight": (64, 1, 7, 7),
    "bn1.weight": (64,),
    "bn1.running_mean": (64,),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer1.1.bn2.running_var": (64,),
    "layer2.0.conv1.weight": (128, 64, 3, 3),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.bias": (128,),
    "layer3.0.downsample.0.weight": (256, 128, 1, 1),
    "layer4.1.conv2.weight": (512, 512, 3, 3),
    "layer4.1.bn2.bias": (512,),
}


def _random_state_dict(arch, seed=0, **kwargs):
  """A torchvision-layout state dict with random weights and BN statistics."""
  rng = np.random.default_rng(seed)
  state_dict = {}
  for key, shape in convert.torch_shapes(arch, **kwargs).items():
    if len(shape) == 1 and key.endswith(("weight", "running_var")):  # BN scale, variance.
      value = rng.uniform(0.5, 1.5, shape)
    elif len(shape) > 1:  # Conv weight, scaled to keep activations O(1).
      value = rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))
    else:
      value = 0.1 * rng.normal(size=shape)
    state_dict[key] = value.astype(np.float32)
  return state_dict


@pytest.mark.parametrize("arch, sample, num_keys, num_params", [
    ("r2plus1d_18", R2PLUS1D_SAMPLE, 185, 31_300_125),
    ("resnet18_audio", RESNET18_SAMPLE, 100, 11_170_240),
])
def test_torch_keys_and_shapes(arch, sample, num_keys, num_params):
  shapes = convert.torch_shapes(arch)
  for key, shape in sample.items():
    assert shapes.get(key) == shape, key
  # torchvision state dict minus `fc.*` and the `num_batches_tracked` counters.
  assert len(shapes) == num_keys
  assert "layer1.0.downsample.0.weight" not in shapes
  stats = ("running_mean", "running_var")
  assert sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith(stats)) == num_params


@pytest.mark.parametrize("arch", ["r2plus1d_tiny", "resnet_audio_tiny", "resnet18_audio"])
def test_round_trip(arch):
  state_dict = _random_state_dict(arch)
  variables = convert.torchvision_to_flax(state_dict, arch)
  assert set(variables) == {"params", "batch_stats"}
  back = convert.flax_to_torchvision(variables, arch)
  assert back.keys() == state_dict.keys()
  for key in state_dict:
    np.testing.assert_array_equal(back[key], state_dict[key], err_msg=key)
  again = convert.torchvision_to_flax(back, arch)
  assert jax.tree.all(jax.tree.map(np.array_equal, again, variables))


def test_model_kwargs_and_prefix():
  kwargs = {"stage_widths": (8, 8, 16, 24)}
  state_dict = _random_state_dict("r2plus1d_tiny", model_kwargs=kwargs)
  assert state_dict["layer4.0.conv1.0.3.weight"].shape[0] == 24
  wrapped = {f"video_network.{k}": v for k, v in state_dict.items()}
  wrapped["audio_network.conv1.weight"] = np.zeros((8, 1, 7, 7), np.float32)
  variables = convert.torchvision_to_flax(wrapped, "r2plus1d_tiny", model_kwargs=kwargs,
                                          prefix="video_network.")
  assert variables["params"]["layer4_0"]["conv1"]["temporal"]["kernel"].shape[-1] == 24


def test_classifier_and_counters_ignored():
  state_dict = _random_state_dict("resnet_audio_tiny")
  state_dict["fc.weight"] = np.zeros((400, 32), np.float32)
  state_dict["fc.bias"] = np.zeros((400,), np.float32)
  state_dict["bn1.num_batches_tracked"] = np.array(7, np.int64)
  variables = convert.torchvision_to_flax(state_dict, "resnet_audio_tiny")
  back = convert.flax_to_torchvision(variables, "resnet_audio_tiny")
  assert "fc.weight" not in back and "bn1.num_batches_tracked" not in back


def test_errors_name_the_key():
  arch = "r2plus1d_tiny"
  state_dict = _random_state_dict(arch)
  missing = dict(state_dict)
  del missing["layer2.0.conv1.0.3.weight"]
  with pytest.raises(ValueError, match=r"missing key 'layer2\.0\.conv1\.0\.3\.weight'"):
    convert.torchvision_to_flax(missing, arch)

  unexpected = {**state_dict, "layer5.0.conv1.0.0.weight": np.zeros((3, 3))}
  with pytest.raises(ValueError, match=r"unexpected key 'layer5\.0\.conv1\.0\.0\.weight'"):
    convert.torchvision_to_flax(unexpected, arch)

  shape = state_dict["stem.0.weight"].shape
  wrong = {**state_dict, "stem.0.weight": np.zeros(shape[:2] + (3,) + shape[3:], np.float32)}
  with pytest.raises(ValueError, match=r"'stem\.0\.weight' has shape \(4, 3, 3, 7, 7\), "
                                       r"expected \(4, 3, 1, 7, 7\)"):
    convert.torchvision_to_flax(wrong, arch)

  with pytest.raises(ValueError, match="r3d_18"):
    convert.torchvision_to_flax(state_dict, "r3d_18")

  variables = convert.torchvision_to_flax(state_dict, arch)
  del variables["batch_stats"]["stem_bn1"]
  with pytest.raises(ValueError, match="missing variable 'batch_stats/stem_bn1/mean'"):
    convert.flax_to_torchvision(variables, arch)


def test_npz_files(tmp_path):
  state_dict = _random_state_dict("resnet_audio_tiny")
  path = tmp_path / "g.npz"
  np.savez(path, **state_dict)
  loaded = convert.load_state_dict(path)
  assert loaded.keys() == state_dict.keys()
  np.testing.assert_array_equal(loaded["conv1.weight"], state_dict["conv1.weight"])
  with pytest.raises(ValueError, match=r"g\.ckpt"):
    convert.load_state_dict(tmp_path / "g.ckpt")


# torchvision's forward passes, written from its module definitions in NCDHW /
# NCHW with torch-layout weights: converted weights must compute the same maps.

def _conv(x, w, stride, padding):
  spec = ("NCDHW", "OIDHW", "NCDHW") if w.ndim == 5 else ("NCHW", "OIHW", "NCHW")
  return jax.lax.conv_general_dilated(x, w, stride, [(p, p) for p in padding],
                                      dimension_numbers=spec,
                                      precision=jax.lax.Precision.HIGHEST)


def _bn(x, sd, name):
  shape = (1, -1) + (1,) * (x.ndim - 2)
  w, b, mean, var = (sd[f"{name}.{k}"].reshape(shape)
                     for k in ("weight", "bias", "running_mean", "running_var"))
  return (x - mean) / jnp.sqrt(var + 1e-5) * w + b


def _blocks(sd):
  """Yields (block name, stride): torchvision strides the first block of stages 2-4."""
  for block in sorted({".".join(k.split(".")[:2]) for k in sd if k.startswith("layer")}):
    stage, index = block[len("layer"):].split(".")
    yield block, 2 if stage != "1" and index == "0" else 1


def _torch_r2plus1d(sd, x):
  relu = jax.nn.relu

  def conv2plus1d(x, name, s):
    x = relu(_bn(_conv(x, sd[f"{name}.0.weight"], (1, s, s), (0, 1, 1)), sd, f"{name}.1"))
    return _conv(x, sd[f"{name}.3.weight"], (s, 1, 1), (1, 0, 0))

  x = relu(_bn(_conv(x, sd["stem.0.weight"], (1, 2, 2), (0, 3, 3)), sd, "stem.1"))
  x = relu(_bn(_conv(x, sd["stem.3.weight"], (1, 1, 1), (1, 0, 0)), sd, "stem.4"))
  for block, s in _blocks(sd):
    y = relu(_bn(conv2plus1d(x, f"{block}.conv1.0", s), sd, f"{block}.conv1.1"))
    y = _bn(conv2plus1d(y, f"{block}.conv2.0", 1), sd, f"{block}.conv2.1")
    if f"{block}.downsample.0.weight" in sd:
      x = _bn(_conv(x, sd[f"{block}.downsample.0.weight"], (s, s, s), (0, 0, 0)), sd,
              f"{block}.downsample.1")
    x = relu(x + y)
  return x


def _torch_resnet(sd, x):
  relu = jax.nn.relu
  x = relu(_bn(_conv(x, sd["conv1.weight"], (2, 2), (3, 3)), sd, "bn1"))
  x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 2, 2),
                            [(0, 0), (0, 0), (1, 1), (1, 1)])
  for block, s in _blocks(sd):
    y = relu(_bn(_conv(x, sd[f"{block}.conv1.weight"], (s, s), (1, 1)), sd, f"{block}.bn1"))
    y = _bn(_conv(y, sd[f"{block}.conv2.weight"], (1, 1), (1, 1)), sd, f"{block}.bn2")
    if f"{block}.downsample.0.weight" in sd:
      x = _bn(_conv(x, sd[f"{block}.downsample.0.weight"], (s, s), (0, 0)), sd,
              f"{block}.downsample.1")
    x = relu(x + y)
  return x


@pytest.mark.parametrize("arch, input_shape, reference", [
    ("r2plus1d_tiny", (2, 5, 19, 23, 3), _torch_r2plus1d),
    ("resnet_audio_tiny", (2, 37, 29, 1), _torch_resnet),
])
def test_converted_weights_match_torchvision_forward(arch, input_shape, reference):
  state_dict = _random_state_dict(arch, seed=3)
  variables = convert.torchvision_to_flax(state_dict, arch)
  model = convert.ARCHS[arch][0](dtype=jnp.float32)
  x = np.random.default_rng(4).normal(size=input_shape).astype(np.float32)
  channels_first = (0, x.ndim - 1) + tuple(range(1, x.ndim - 1))
  channels_last = (0,) + tuple(range(2, x.ndim)) + (1,)

  @jax.jit
  def both(variables, state_dict, x):
    with jax.default_matmul_precision("highest"):
      out = model.apply(variables, x)
    return out, reference(state_dict, x.transpose(channels_first)).transpose(channels_last)

  out, expected = both(variables, state_dict, x)
  assert out.shape == expected.shape
  scale = float(np.abs(expected).max())
  assert scale > 0.1
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * scale)
