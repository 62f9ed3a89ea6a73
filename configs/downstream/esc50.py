r"""ESC-50 sound classification with the audio encoder g (paper Sections 4.1, 7.2).

  python -m avjax.prepare_downstream --dataset=esc50 --root=/data/ESC-50-master --output=data/esc50
  python -m avjax.finetune --config=configs/downstream/esc50.py:data=data/esc50 \
      --config.init=runs/movie_k16/export --workdir=runs/movie_k16/esc50_fold1

Config args (comma-separated, after the colon):
  data=PATH          the prepared directory
  split=1            the test fold, 1-5 (trained on the other four)
  mode=finetune      finetune (the paper's protocol) or linear (frozen g, linear classifier)
  init=EXPORT_DIR    an export of a pretraining run; "" with no init_torch: from scratch
  runlocal           tiny encoder, clips and step count: runs in a minute on a CPU

Any field can also be overridden, e.g. `--config.split=3 --config.init_torch=resnet18.npz`.
"""

import ml_collections

from avjax import config_args
from avjax.data import downstream
from avjax.models import av


def get_config(arg=None):
  arg = config_args.parse_arg(arg, data="data/esc50", split=1, mode="finetune", init="",
                              runlocal=False)
  config = ml_collections.ConfigDict()
  config.dataset = "esc50"
  config.split = arg.split
  config.mode = arg.mode
  config.init = arg.init            # export dir (python -m avjax.export)
  config.init_torch = ""            # or a torchvision-layout state dict (.npz, .pth)
  config.init_torch_prefix = ""     # key prefix of the encoder inside that state dict
  config.seed = 0

  # Section 4.1: random 3-s clips, time and frequency masks up to 50% of each axis, no
  # crop or scale jitter; test on 10 uniformly spaced clips.
  config.data = downstream.default_config("esc50")
  config.data.data_dir = arg.data

  config.model = av.default_config()  # the export's architecture replaces this one
  config.dropout = 0.0

  # Section 7.2: as for action recognition (SGD, momentum 0.9, weight decay 1e-4, lr 1e-3
  # -> 0.2 over 25 warm-up epochs then cosine, batch 96), 200 epochs.
  config.batch_size = 96
  config.eval_batch_size = 32  # test clips per batch (x 10 views)
  config.num_epochs = 200
  config.total_steps = 0       # >0 overrides num_epochs
  # Micro-batches per step (gradients averaged): fits the batch on fewer accelerators,
  # e.g. 8 on one GPU gives 8 x 12, the per-GPU batch of an 8-GPU run.
  config.grad_accum_steps = 1
  config.optimizer = ml_collections.ConfigDict(dict(
      lr_init=1e-3, lr_peak=0.2, lr_end=0.0, warmup_epochs=25.0, momentum=0.9,
      weight_decay=1e-4, nesterov=False))

  config.log_every_steps = 10
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 2
  config.eval_every_steps = 0  # >0: also test every N steps

  if arg.runlocal:
    config.model.video.name = "r2plus1d_tiny"
    config.model.audio.name = "resnet_audio_tiny"
    config.model.dtype = "float32"
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
  return config
