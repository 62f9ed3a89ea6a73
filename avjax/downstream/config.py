"""Downstream configs (TensorFlow-free): the paper's protocol, the one table of it per dataset.

Paper Sections 4.1 and 7.2. Video (UCF101, HMDB51, encoder f): train on 32-frame clips
at 10 fps from a random position, shorter side jittered in [181, 226], random 158x158
crop, horizontal flip, color jitter; test on 10 uniformly spaced clips x 3 crops (left,
center, right). Audio (ESC-50, encoder g): random 3-s clips with time and frequency
masking of up to 50% of each axis (no crop, no scale jitter); test on 10 uniformly
spaced clips. SGD with momentum 0.9 and weight decay 1e-4, lr 1e-3 -> 0.2 over 25
epochs then cosine, batch 96.

configs/downstream/<dataset>.py state a run by overriding `protocol_config`; the task hands
it to the loop (a field an older checkpoint lacks counts as its default here) and checks
what only it knows (`problems`: the mode).
"""

import ml_collections

from avjax.data import config as data_config
from avjax.data import layouts
from avjax.models import av

VIDEO_DATASETS = ("ucf101", "hmdb51")
# finetune: the whole classifier trains; linear: the backbone is frozen (its BatchNorm keeps
# the pretrained statistics), only the linear layer on the pooled features trains.
MODES = ("finetune", "linear")
# Per dataset (Section 7.2): training epochs, and test clips per evaluation batch (each
# clip is 30 video or 10 audio views).
PROTOCOLS = {
    "ucf101": dict(num_epochs=150, eval_batch_size=8),
    "hmdb51": dict(num_epochs=200, eval_batch_size=8),
    "esc50": dict(num_epochs=200, eval_batch_size=32),
}


def default_config(dataset):
  """Input config of `dataset` with the paper's protocol (Sections 4.1, 7.2)."""
  if dataset not in layouts.DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(layouts.DATASETS)}")
  c = ml_collections.ConfigDict()
  c.dataset = dataset
  c.kind = layouts.KINDS[dataset]
  c.source = "records"      # "records": a prepared directory; "tfds": the TFDS builder
  c.data_dir = ""           # the prepared directory, or the TFDS data_dir
  c.tfds_config = ""        # TFDS builder config; "" = f"ucf101_{split}"
  c.seed = 0
  c.num_frames = 32
  c.fps = 10.0
  c.scale_min, c.scale_max = 181, 226
  c.crop_size = 158
  c.flip = True
  c.color_jitter = 0.4      # sigma of data.ops.jitter_factors (brightness, contrast, saturation)
  # Test: 10 uniformly spaced clips x 3 crops (left, center, right) = 30 views. The
  # shorter side is resized to test_short_side (the low end of the training jitter).
  c.test_clips = 10
  c.test_crops = 3
  c.test_short_side = 181
  # Video normalization, (x - mean) / std on [0, 1] values: the pretraining pipeline's.
  c.video_mean = data_config.VIDEO_MEAN
  c.video_std = data_config.VIDEO_STD
  # Audio: random 3-s clips, log-mel (avjax.data.audio), time and frequency masks of up
  # to 50% of each axis, no crop or scale jitter (Section 4.1); test: 10 clips.
  c.clip_seconds = 3.0
  c.sample_rate = data_config.SAMPLE_RATE
  # The log-mel of the pretraining run whose g is evaluated (its config.data): g was
  # trained on spectrograms of this frame rate and height.
  c.n_fft = data_config.N_FFT
  c.hop = data_config.HOP
  c.mel_bins = data_config.MEL_BINS
  c.audio_mask_fraction = 0.5
  # I/O.
  c.shuffle_buffer = 512
  c.prefetch = 2
  c.num_parallel = -1  # parallel decode calls; -1 = two per core
  c.dtype = "float32"        # of the model input arrays; "bfloat16" halves host->device
  return c


def views_per_clip(c):
  """Test views per clip: 30 for video (10 clips x 3 crops), 10 for audio."""
  return c.test_clips * (c.test_crops if c.kind == "video" else 1)


def protocol_config(dataset, arg=None):
  """The run config of `dataset` under the paper's protocol (PROTOCOLS; Section 7.2).

  `arg` (configs/downstream/<dataset>.py's parsed args) has data, split, mode, init,
  runlocal and, for video, res ("default": scale jitter [181, 226], crop 158; "high":
  Table 5's sizes scaled like pretraining's 224 -> 200); None: the defaults (split 1,
  finetune, from scratch).
  """
  if dataset not in PROTOCOLS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(PROTOCOLS)}")
  if arg is None:
    arg = ml_collections.ConfigDict(dict(data=f"data/{dataset}", split=1, mode="finetune",
                                         init="", runlocal=False))
  video = dataset in VIDEO_DATASETS
  config = ml_collections.ConfigDict()
  config.dataset = dataset
  config.split = arg.split
  config.mode = arg.mode
  config.init = arg.init            # export dir (python -m avjax.export)
  config.init_torch = ""            # or a torchvision-layout state dict (.npz, .pth)
  config.init_torch_prefix = ""     # key prefix of the encoder inside that state dict
  config.seed = 0

  config.data = default_config(dataset)
  config.data.data_dir = arg.data
  res = arg.get("res", "default")
  if res == "high" and video:
    config.data.scale_min, config.data.scale_max = 213, 266
    config.data.crop_size = 200
    config.data.test_short_side = 213
  elif res != "default":
    raise ValueError(f"res={res!r}: expected 'default'" + (" or 'high'" if video else ""))

  config.model = av.default_config()  # the export's architecture replaces this one
  config.dropout = 0.0
  config.batch_size = 96
  config.eval_batch_size = PROTOCOLS[dataset]["eval_batch_size"]  # test clips per batch
  config.num_epochs = PROTOCOLS[dataset]["num_epochs"]
  config.total_steps = 0       # >0 overrides num_epochs
  # Micro-batches per step (gradients averaged): fits the batch on fewer accelerators,
  # e.g. 8 on one GPU gives 8 x 12, the per-GPU batch of an 8-GPU run.
  config.grad_accum_steps = 1
  config.optimizer = ml_collections.ConfigDict(dict(
      lr_init=1e-3, lr_peak=0.2, lr_end=0.0, warmup_epochs=25.0, momentum=0.9,
      weight_decay=1e-4, nesterov=False))
  config.log_every_steps = 50 if video else 10
  config.checkpoint_every_steps = 1000 if video else 500
  config.keep_checkpoints = 2
  config.eval_every_steps = 0  # >0: also test every N steps
  config.resume = "guard"  # or "allow_changes": resume a run with a changed config

  if arg.runlocal:
    _runlocal(config, video)
  return config


def _runlocal(config, video):
  """Tiny encoders, clips and step count: a run of a minute or two on a CPU."""
  config.model.video.name = "r2plus1d_tiny"
  config.model.audio.name = "resnet_audio_tiny"
  config.model.dtype = "float32"
  if video:
    config.data.num_frames = 4
    config.data.scale_min, config.data.scale_max = 20, 24
    config.data.crop_size = 16
    config.data.test_short_side = 20
  else:
    config.data.clip_seconds = 0.5
  config.data.test_clips = 2
  config.data.shuffle_buffer = 16
  config.batch_size = 8
  config.eval_batch_size = 8
  config.total_steps = 4
  config.optimizer.lr_peak = 0.05
  config.optimizer.warmup_epochs = 1.0
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2


def problems(config):
  """What is wrong in a fine-tuning run config that only this task knows (the validator,
  avjax.validate, checks the rest): messages naming the field; [] when fine."""
  out = []
  if config.get("mode") not in MODES:
    out.append(f"config.mode={config.get('mode')!r}: must be one of {MODES}")
  return out
