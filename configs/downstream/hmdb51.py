r"""HMDB51 action recognition with the video encoder f (paper Sections 4.1, 7.2).

  python -m avjax.prepare_downstream --dataset=hmdb51 --root=/data/HMDB51 --output=data/hmdb51
  python -m avjax.finetune --config=configs/downstream/hmdb51.py:data=data/hmdb51 \
      --config.init=runs/movie_k16/export --workdir=runs/movie_k16/hmdb51_split1

Config args (comma-separated, after the colon):
  data=PATH          the prepared directory
  split=1            the official split, 1-3
  mode=finetune      finetune (the paper's protocol) or linear (frozen f, linear classifier)
  init=EXPORT_DIR    an export of a pretraining run; "" with no init_torch: from scratch
  res=default        default (jitter [181, 226], crop 158) or high (Table 5: [213, 266], 200)
  runlocal           tiny encoder, clips and step count: runs in a minute on a CPU

Any field can also be overridden, e.g. `--config.split=2 --config.init_torch=r2plus1d.npz`.
"""

import ml_collections

from avjax import config_args
from avjax.data import downstream
from avjax.models import av


def get_config(arg=None):
  arg = config_args.parse_arg(arg, data="data/hmdb51", split=1, mode="finetune", init="",
                              res="default", runlocal=False)
  config = ml_collections.ConfigDict()
  config.dataset = "hmdb51"
  config.split = arg.split
  config.mode = arg.mode
  config.init = arg.init            # export dir (python -m avjax.export)
  config.init_torch = ""            # or a torchvision-layout state dict (.npz, .pth)
  config.init_torch_prefix = ""     # key prefix of the encoder inside that state dict
  config.seed = 0

  config.data = downstream.default_config("hmdb51")
  config.data.data_dir = arg.data
  if arg.res == "high":
    # Section 7.2: the Table 5 models see 224 -> 200 in pretraining; downstream sizes
    # are scaled by the same factor.
    config.data.scale_min, config.data.scale_max = 213, 266
    config.data.crop_size = 200
    config.data.test_short_side = 213
  elif arg.res != "default":
    raise ValueError(f"res={arg.res!r}: expected 'default' or 'high'")

  config.model = av.default_config()  # the export's architecture replaces this one
  config.dropout = 0.0

  # Section 7.2: SGD, momentum 0.9, weight decay 1e-4, lr 1e-3 -> 0.2 linearly over the
  # first 25 epochs then cosine, batch 96, 200 epochs.
  config.batch_size = 96
  config.eval_batch_size = 8   # test clips per batch (x 30 views)
  config.num_epochs = 200
  config.total_steps = 0       # >0 overrides num_epochs
  # Micro-batches per step (gradients averaged): fits the batch on fewer accelerators,
  # e.g. 8 on one GPU gives 8 x 12, the per-GPU batch of an 8-GPU run.
  config.grad_accum_steps = 1
  config.optimizer = ml_collections.ConfigDict(dict(
      lr_init=1e-3, lr_peak=0.2, lr_end=0.0, warmup_epochs=25.0, momentum=0.9,
      weight_decay=1e-4, nesterov=False))

  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 2
  config.eval_every_steps = 0  # >0: also test every N steps (30 views: slow)

  if arg.runlocal:
    config.model.video.name = "r2plus1d_tiny"
    config.model.audio.name = "resnet_audio_tiny"
    config.model.dtype = "float32"
    config.data.num_frames = 4
    config.data.scale_min, config.data.scale_max = 20, 24
    config.data.crop_size = 16
    config.data.test_short_side = 20
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
