r"""The step benchmark's config: pretraining's model, optimizer and loss (avjax.pretrain.step)
plus input shapes (paper Section 4: 16 frames cropped to 158x158; 96 mel bins x 300 frames
for 3.2 s).

  python -m avjax.benchmark step --config=configs/step_benchmark.py:remat=convs --batch=128
  python -m avjax.benchmark step --config=configs/step_benchmark.py:runlocal --steps=20  # CPU

Config args: runlocal (tiny encoders and shapes), remat=none|convs (`convs`: keep only
conv outputs for the backward pass, recompute BN/ReLU). No TensorFlow: the benchmark runs
on accelerator hosts that have only JAX.
"""

import ml_collections

from avjax import config_args
from avjax.models import remat as remat_lib
from avjax.pretrain import step


def get_config(arg=None):
  """Model, optimizer and loss of pretraining, plus input shapes; no TensorFlow."""
  arg = config_args.parse_arg(arg, runlocal=False, remat="none")
  if arg.remat not in remat_lib.POLICIES:
    raise ValueError(f"remat={arg.remat!r}: expected one of {sorted(remat_lib.POLICIES)}")
  base = step.default_config()
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = base.model
  config.loss = base.loss
  config.optimizer = base.optimizer
  # Paper Section 4: 16 frames cropped to 158x158; 96 mel bins x ~300 frames for 3.2 s.
  config.data = ml_collections.ConfigDict(dict(
      num_frames=16, crop_size=158, mel_bins=96, audio_frames=300))
  config.per_device_batch = 0  # 0: --batch, else 64 on an accelerator, 2 on CPU
  config.steps = 20            # timed steps (--steps overrides)
  config.warmup_steps = 3
  config.model.remat = arg.remat
  if arg.runlocal:
    config.model.video.name = "r2plus1d_tiny"
    config.model.audio.name = "resnet_audio_tiny"
    config.model.embed_dim = 64
    config.model.dtype = "float32"
    config.data.update(dict(num_frames=8, crop_size=56, mel_bins=96, audio_frames=100))
    config.per_device_batch = 2
  return config
