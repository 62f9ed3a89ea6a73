"""Encoder weights between torchvision state dicts and Flax variables.

The torch names and shapes are derived by walking the Flax variable tree of
the encoder with the explicit name tables below. Kernel layouts:

  Flax (R2Plus1D)             torch (VideoResNet)      Flax kernel        torch weight
  stem_spatial                stem.0 (1,7,7)           (7, 7, 3, 45)      (45, 3, 1, 7, 7)
  stem_temporal               stem.3 (3,1,1)           (3, 1, 45, 64)     (64, 45, 3, 1, 1)
  layerX_Y/convK/spatial      layerX.Y.convK.0.0       (3, 3, cin, mid)   (mid, cin, 1, 3, 3)
  layerX_Y/convK/temporal     layerX.Y.convK.0.3       (3, 1, mid, cout)  (cout, mid, 3, 1, 1)
  layerX_Y/downsample_conv    layerX.Y.downsample.0    (1, 1, cin, cout)  (cout, cin, 1, 1, 1)

  Flax (ResNet): convs and BNs keep torchvision's names, with `layerX_Y` for
  `layerX.Y` and `downsample_conv`/`downsample_bn` for `downsample.0`/`.1`;
  kernel (kh, kw, cin, cout) <-> weight (cout, cin, kh, kw).

BatchNorm: scale/bias <-> weight/bias (params), mean/var <-> running_mean/
running_var (batch_stats). `num_batches_tracked` and the classifier `fc.*`
are ignored when reading and not written (torch fills in the counter when a
plain dict without it is loaded).
"""

import os
import re
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from avjax.models import r2plus1d, resnet


class _Layout(NamedTuple):
  to_torch: Callable[[np.ndarray], np.ndarray]
  to_flax: Callable[[np.ndarray], np.ndarray]
  torch_shape: Callable[[tuple], tuple]


_LAYOUTS = {
    # (kh, kw, cin, cout) <-> (cout, cin, kh, kw)
    "conv2d": _Layout(
        lambda k: k.transpose(3, 2, 0, 1),
        lambda w: w.transpose(2, 3, 1, 0),
        lambda s: (s[3], s[2], s[0], s[1])),
    # (kh, kw, cin, cout) <-> (cout, cin, 1, kh, kw)
    "spatial": _Layout(
        lambda k: k.transpose(3, 2, 0, 1)[:, :, None],
        lambda w: w[:, :, 0].transpose(2, 3, 1, 0),
        lambda s: (s[3], s[2], 1, s[0], s[1])),
    # (kt, 1, cin, cout) <-> (cout, cin, kt, 1, 1)
    "temporal": _Layout(
        lambda k: k[:, 0].transpose(2, 1, 0)[..., None, None],
        lambda w: w[:, :, :, 0, 0].transpose(2, 1, 0)[:, None],
        lambda s: (s[3], s[2], s[0], 1, 1)),
    "vector": _Layout(lambda x: x, lambda x: x, lambda s: tuple(s)),
}

# Flax module path (inside the encoder or inside a block) -> (torch module, layout).
_VIDEO_TOP = {
    ("stem_spatial",): ("stem.0", "spatial"),
    ("stem_bn1",): ("stem.1", "bn"),
    ("stem_temporal",): ("stem.3", "temporal"),
    ("stem_bn2",): ("stem.4", "bn"),
}
# torchvision: convK = Sequential(Conv2Plus1D, BN[, ReLU]) and
# Conv2Plus1D = Sequential(spatial conv, BN, ReLU, temporal conv).
_VIDEO_BLOCK = {
    ("conv1", "spatial"): ("conv1.0.0", "spatial"),
    ("conv1", "bn"): ("conv1.0.1", "bn"),
    ("conv1", "temporal"): ("conv1.0.3", "temporal"),
    ("bn1",): ("conv1.1", "bn"),
    ("conv2", "spatial"): ("conv2.0.0", "spatial"),
    ("conv2", "bn"): ("conv2.0.1", "bn"),
    ("conv2", "temporal"): ("conv2.0.3", "temporal"),
    ("bn2",): ("conv2.1", "bn"),
    ("downsample_conv",): ("downsample.0", "spatial"),
    ("downsample_bn",): ("downsample.1", "bn"),
}
_AUDIO_TOP = {
    ("conv1",): ("conv1", "conv2d"),
    ("bn1",): ("bn1", "bn"),
}
_AUDIO_BLOCK = {
    ("conv1",): ("conv1", "conv2d"),
    ("bn1",): ("bn1", "bn"),
    ("conv2",): ("conv2", "conv2d"),
    ("bn2",): ("bn2", "bn"),
    ("downsample_conv",): ("downsample.0", "conv2d"),
    ("downsample_bn",): ("downsample.1", "bn"),
}
# (collection, Flax leaf) -> torch leaf.
_LEAVES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
_BLOCK = re.compile(r"layer(\d+)_(\d+)$")  # Flax block `layerX_Y` is torch `layerX.Y`.

# arch -> (factory, dummy input for shape inference, top-level table, block table).
ARCHS = {
    "r2plus1d_18": (r2plus1d.r2plus1d_18, (1, 4, 32, 32, 3), _VIDEO_TOP, _VIDEO_BLOCK),
    "r2plus1d_tiny": (r2plus1d.r2plus1d_tiny, (1, 4, 32, 32, 3), _VIDEO_TOP, _VIDEO_BLOCK),
    "resnet18_audio": (resnet.resnet18_audio, (1, 32, 32, 1), _AUDIO_TOP, _AUDIO_BLOCK),
    "resnet_audio_tiny": (resnet.resnet_audio_tiny, (1, 32, 32, 1), _AUDIO_TOP, _AUDIO_BLOCK),
}


class _Entry(NamedTuple):
  flax_path: tuple  # (collection, *module path, leaf)
  torch_key: str
  layout: _Layout
  flax_shape: tuple
  dtype: np.dtype


def _entries(arch, model_kwargs):
  """Walks the encoder's abstract variables and names each leaf's torch key."""
  if arch not in ARCHS:
    raise ValueError(f"unknown arch {arch!r}; valid: {sorted(ARCHS)}")
  factory, input_shape, top, block = ARCHS[arch]
  model = factory(**(model_kwargs or {}))
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(input_shape), train=False))
  entries = []
  for path, leaf in traverse_util.flatten_dict(dict(variables)).items():
    collection, *modules, name = path
    match = _BLOCK.match(modules[0])
    if match:
      prefix, table, modules = f"layer{match[1]}.{match[2]}.", block, modules[1:]
    else:
      prefix, table = "", top
    torch_module, kind = table[tuple(modules)]
    layout = _LAYOUTS["vector" if kind == "bn" else kind]
    key = f"{prefix}{torch_module}.{_LEAVES[collection, name]}"
    entries.append(_Entry(path, key, layout, tuple(leaf.shape), leaf.dtype))
  return entries


def _check(found, expected, arch, what):
  """Raises a ValueError naming every missing, unexpected or misshapen key."""
  problems = []
  for key in sorted(expected.keys() - found.keys()):
    problems.append(f"missing {what} {key!r} (expected shape {expected[key]})")
  for key in sorted(found.keys() - expected.keys()):
    problems.append(f"unexpected {what} {key!r} (shape {found[key]})")
  for key in sorted(found.keys() & expected.keys()):
    if tuple(found[key]) != tuple(expected[key]):
      problems.append(f"{what} {key!r} has shape {tuple(found[key])}, expected {expected[key]}")
  if problems:
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise ValueError(f"{arch}: {len(problems)} {what} problem(s):\n  {shown}{more}")


def torch_shapes(arch, *, model_kwargs=None):
  """The torchvision state dict keys (without classifier and counters) and shapes of `arch`."""
  return {e.torch_key: e.layout.torch_shape(e.flax_shape) for e in _entries(arch, model_kwargs)}


def torchvision_to_flax(state_dict, arch, *, model_kwargs=None, prefix=""):
  """Converts a torchvision-layout state dict to Flax encoder variables.

  Args:
    state_dict: mapping of torch names to arrays (e.g. from `load_state_dict`).
    arch: one of `ARCHS` ("r2plus1d_18", "resnet18_audio" or a tiny variant).
    model_kwargs: overrides passed to the arch's factory (e.g. widths).
    prefix: only keys starting with it are read, with it stripped (e.g.
      "video_network." for checkpoints that hold several networks).

  Returns:
    {"params": ..., "batch_stats": ...} as nested dicts of numpy arrays.

  Raises:
    ValueError: naming each missing or unexpected key and each wrong shape.
  """
  entries = _entries(arch, model_kwargs)
  arrays = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
  arrays = {k: v for k, v in arrays.items()
            if not (k.endswith("num_batches_tracked") or k.startswith("fc."))}
  _check({k: np.shape(v) for k, v in arrays.items()},
         {e.torch_key: e.layout.torch_shape(e.flax_shape) for e in entries}, arch, "key")
  flat = {e.flax_path: np.ascontiguousarray(
      e.layout.to_flax(np.asarray(arrays[e.torch_key])).astype(e.dtype)) for e in entries}
  return traverse_util.unflatten_dict(flat)


def flax_to_torchvision(variables, arch, *, model_kwargs=None):
  """Converts Flax encoder variables ({"params", "batch_stats"}) to a torchvision state dict.

  Returns a dict of torch names to float32 numpy arrays, without classifier.

  Raises:
    ValueError: naming each missing or unexpected variable and each wrong shape.
  """
  entries = _entries(arch, model_kwargs)
  flat = {"/".join(p): v for p, v in traverse_util.flatten_dict(
      {c: dict(variables[c]) for c in variables}).items()}
  _check({k: np.shape(v) for k, v in flat.items()},
         {"/".join(e.flax_path): e.flax_shape for e in entries}, arch, "variable")
  return {e.torch_key: np.ascontiguousarray(
      e.layout.to_torch(np.asarray(flat["/".join(e.flax_path)], np.float32)))
          for e in entries}


def load_state_dict(path):
  """Reads a state dict from `.npz`, or from `.pth`/`.pt` when torch is installed."""
  path = os.fspath(path)
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  if path.endswith((".pth", ".pt", ".tar")):
    try:
      import torch
    except ImportError as e:
      raise ImportError(
          f"{path}: reading a PyTorch checkpoint needs torch (pip install 'avjax[torch]'); "
          "or save its state dict with numpy.savez and pass the .npz") from e
    obj = torch.load(path, map_location="cpu", weights_only=True)
    # GDT/XDC-style checkpoints wrap the state dict.
    for wrapper in ("state_dict", "model"):
      if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
        obj = obj[wrapper]
    # numpy has no bfloat16; float tensors are read as float32.
    return {k: (v.float() if v.is_floating_point() else v).detach().cpu().numpy()
            for k, v in obj.items() if torch.is_tensor(v)}
  raise ValueError(f"{path}: unknown state dict format; expected .npz, .pth or .pt")
