"""The audio-visual model: encoders f, g and heads h_f, h_g (paper Section 3).

`AVModel` returns the embeddings z_v = h_f(f(v)), z_a = h_g(g(a)) that enter
the NCE loss. Only the encoders are exported; `build_encoder` builds one of
them alone with the same parameter tree as inside `AVModel`, so the exported
`video_encoder` / `audio_encoder` variables load into it directly.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from avjax.models import heads, layers, r2plus1d, resnet

ENCODERS = {"video": r2plus1d.VARIANTS, "audio": resnet.VARIANTS}


def _encoder_config(name):
  """An encoder's variant name plus overridable depth and widths (None: the variant's)."""
  placeholder = ml_collections.config_dict.placeholder
  return ml_collections.ConfigDict(dict(
      name=name, stage_sizes=placeholder(tuple), stage_widths=placeholder(tuple)))


def default_config():
  """Model config: encoder names (plus optional factory overrides), heads, dtype."""
  return ml_collections.ConfigDict(dict(
      video=_encoder_config("r2plus1d_18"),
      audio=_encoder_config("resnet18_audio"),
      embed_dim=512,
      head_kernel_size=1,
      head_hidden=-1,  # -1: as many channels as the encoder's output.
      dtype="bfloat16",
      # The encoders' BatchNorm: "flax" (nn.BatchNorm) or "fused" (models/fused_norm.py:
      # BN + add + ReLU in one op whose backward keeps bf16 inputs and per-channel
      # statistics only). Same variables, so checkpoints and exports load into either.
      norm="flax",
      remat="none",  # what training keeps for the backward pass: see models/remat.py
  ))


class AVModel(nn.Module):
  """f, g and their projection heads.

  Attributes:
    video_encoder: f, (N, T, H, W, 3) -> feature map.
    audio_encoder: g, (N, mel_bins, frames, 1) -> feature map.
    embed_dim: embedding dimension d.
    head_kernel_size: kernel size of the heads' convs.
    head_hidden: heads' hidden channels; None keeps the encoder's channels.
    dtype: compute dtype of the heads.
  """
  video_encoder: nn.Module
  audio_encoder: nn.Module
  embed_dim: int = 512
  head_kernel_size: int = 1
  head_hidden: int | None = None
  dtype: Any = jnp.bfloat16

  def setup(self):
    head = lambda: heads.ProjectionHead(self.embed_dim, self.head_hidden,
                                        self.head_kernel_size, dtype=self.dtype)
    self.video_head = head()
    self.audio_head = head()

  def __call__(self, video, audio, *, train):
    """Returns (z_video, z_audio), each (N, embed_dim) float32."""
    return self.embed_video(video, train=train), self.embed_audio(audio, train=train)

  def embed_video(self, video, train=False):
    return self.video_head(self.video_encoder(video, train=train), train=train)

  def embed_audio(self, audio, train=False):
    return self.audio_head(self.audio_encoder(audio, train=train), train=train)


def build_encoder(kind, model_config):
  """Builds f (`kind="video"`) or g (`kind="audio"`) from `model_config`.

  `model_config[kind].name` picks the variant; its other fields override the
  factory's defaults (e.g. `stage_widths`). `model_config.norm` picks the BatchNorm
  (configs written before it existed mean "flax").
  """
  if kind not in ENCODERS:
    raise ValueError(f"unknown encoder kind {kind!r}; valid: {sorted(ENCODERS)}")
  variants = ENCODERS[kind]
  # Unset (None) fields keep the variant's defaults; sequences read back from JSON (lists)
  # become tuples, so the module stays hashable (a static argument of jitted functions).
  overrides = {k: tuple(v) if isinstance(v, list) else v
               for k, v in dict(model_config[kind]).items() if v is not None}
  name = overrides.pop("name", None)
  if name not in variants:
    raise ValueError(f"unknown {kind} encoder {name!r} (model.{kind}.name); "
                     f"valid: {sorted(variants)}")
  norm = model_config.get("norm", "flax")
  if norm not in layers.NORMS:
    raise ValueError(f"unknown BatchNorm {norm!r} (model.norm); valid: {sorted(layers.NORMS)}")
  return variants[name](dtype=jnp.dtype(model_config["dtype"]), norm=norm, **overrides)


def build_model(model_config):
  """Builds `AVModel` from a config shaped like `default_config()`."""
  hidden = model_config["head_hidden"]
  return AVModel(
      video_encoder=build_encoder("video", model_config),
      audio_encoder=build_encoder("audio", model_config),
      embed_dim=model_config["embed_dim"],
      head_kernel_size=model_config["head_kernel_size"],
      head_hidden=None if hidden in (None, -1) else hidden,
      dtype=jnp.dtype(model_config["dtype"]),
  )


def init_variables(model, rng, video_shape, audio_shape):
  """Fresh variables (params, batch_stats) of `model` for inputs of these shapes.

  The train state's init (avjax.pretrain.step) and the random-init reference of the
  evaluations both call this with the run's key, so "random initialisation" means this
  run's own step-0 encoders.
  """
  init_rng, _ = jax.random.split(rng)
  return model.init(init_rng, jnp.zeros(video_shape, jnp.float32),
                    jnp.zeros(audio_shape, jnp.float32), train=False)
