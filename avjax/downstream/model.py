"""The downstream classifier: a pretrained backbone f or g, pooling, a linear layer.

The backbone's initial weights come from an export of a pretraining run (avjax.export),
a torchvision-layout checkpoint (models/convert.py), or nowhere (from scratch).
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from avjax import checkpoint
from avjax import fileio
from avjax.models import av
from avjax.models import convert
from avjax.models import heads

BACKBONE = {"video": "video_encoder", "audio": "audio_encoder"}  # names inside an export


class Classifier(nn.Module):
  """Backbone f or g, global average pooling, dropout, linear layer.

  Attributes:
    encoder: the backbone; its variables live under "encoder".
    num_classes: outputs of the linear layer "classifier".
    dropout_rate: dropout on the pooled features (0: none).
    frozen: linear-probe mode: the backbone runs in inference mode (pretrained
      BatchNorm statistics) and no gradient flows into it.
  """
  encoder: nn.Module
  num_classes: int
  dropout_rate: float = 0.0
  frozen: bool = False

  def features(self, x, train=False):
    """Pooled backbone features (N, C), float32."""
    features = heads.global_average_pool(self.encoder(x, train=train and not self.frozen))
    return jax.lax.stop_gradient(features) if self.frozen else features

  @nn.compact
  def __call__(self, x, train=False):
    x = self.features(x, train=train)
    if self.dropout_rate:
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=jnp.float32, name="classifier")(x)


def model_config_for(config, export_config=None):
  """config.model with the encoder's entry taken from the export when there is one.

  The compute dtype always comes from config.model.dtype (an export made in bf16 can be
  evaluated in float32 and vice versa).
  """
  model_config = ml_collections.ConfigDict(config.model.to_dict())
  kind = config.data.kind
  if export_config is not None:
    wanted = dict(config.model[kind])
    model_config[kind] = ml_collections.ConfigDict(dict(export_config[kind]))
    if wanted.get("name") != export_config[kind].get("name"):
      logging.info("model.%s.name %r replaced by the export's %r", kind, wanted.get("name"),
                   export_config[kind].get("name"))
  return model_config


def build_classifier(config, num_classes, model_config):
  return Classifier(encoder=av.build_encoder(config.data.kind, model_config),
                    num_classes=num_classes, dropout_rate=float(config.get("dropout", 0.0)),
                    frozen=config.mode == "linear")


# ---------------------------------------------------------------------------
# Initial backbone weights: an export, a torchvision-layout checkpoint, or none.


def export_model_config(config):
  """The model config stored with the export `config.init`, or None without one."""
  if config.get("init") and config.get("init_torch"):
    raise ValueError("config.init and config.init_torch are both set; pick one")
  if not config.get("init"):
    return None
  path = os.path.join(config.init, checkpoint.EXPORT_CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{config.init}: not an avjax export (no "
                            f"{checkpoint.EXPORT_CONFIG}); make one with python -m avjax.export")
  return fileio.read_json(path)


def load_backbone(config, kind):
  """{"params", "batch_stats"} of the backbone from config.init or config.init_torch, or None."""
  if config.get("init"):
    variables, _ = checkpoint.load_export(config.init)
    name = BACKBONE[kind]
    if name not in variables["params"]:
      raise ValueError(f"{config.init}: export has no {name} (has "
                       f"{sorted(variables['params'])})")
    return {"params": variables["params"][name],
            "batch_stats": variables.get("batch_stats", {}).get(name, {})}
  if config.get("init_torch"):
    overrides = dict(config.model[kind])
    arch = overrides.pop("name")
    state_dict = convert.load_state_dict(config.init_torch)
    variables = convert.torchvision_to_flax(state_dict, arch, model_kwargs=overrides,
                                            prefix=config.get("init_torch_prefix", ""))
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  return None


def check_backbone(loaded, expected, source):
  """Raises a ValueError naming each variable whose path or shape differs from the model's."""
  def flat(tree):
    return {jax.tree_util.keystr(p): tuple(np.shape(x))
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  got, want = flat(loaded), flat(expected)
  problems = [f"missing {k} {want[k]}" for k in sorted(want.keys() - got.keys())]
  problems += [f"unexpected {k} {got[k]}" for k in sorted(got.keys() - want.keys())]
  problems += [f"{k} has shape {got[k]}, the model wants {want[k]}"
               for k in sorted(got.keys() & want.keys()) if got[k] != want[k]]
  if problems:
    shown = "\n  ".join(problems[:20])
    raise ValueError(f"{source}: the backbone does not fit the model ({len(problems)} "
                     f"problem(s)):\n  {shown}")
