r"""Pretraining f, g and heads with the hierarchical sampling policy (paper Sections 3, 4).

  python -m avjax.main --config=configs/pretrain.py:dataset=data/movie,k=16 --workdir=runs/movie_k16

Config args (comma-separated, after the colon):
  dataset=PATH[+PATH...]   dataset dir(s) written by `python -m avjax.ingest` (Movie+TV: two)
  k=16                     snippets per title in a batch (k=1: the i.i.d. baseline)
  w=-1                     sampling window in snippets (-1: w = M_n, no temporal constraint)
  scenes=none              scene-aware sampling: none, distinct (k different scenes of the
                           title) or adaptive (k consecutive scenes); needs w=-1 and scene ids
  jitter=0.0               color jitter strength sigma (Table 2)
  tau=0.0                  >0: l2-normalized embeddings with temperature tau (Table 2 ablation)
  res=default|high         190->158 crop (default) or 224->200 (Table 5)
  runlocal                 a tiny model and batch that trains in minutes on a 2-core CPU
  micro                    f and g of one stage of 8 channels (with runlocal: the smallest
                           model, half its compile time; tests of processes, toy sizes)

The defaults (batch 512, Adam, 10 epochs, ...) are avjax.pretrain.config's; any field can
also be overridden on the command line, e.g. `--config.batch_size=256`.
"""

from avjax import config_args
from avjax.pretrain import config as pretrain_config


def get_config(arg=None):
  arg = config_args.parse_arg(arg, dataset="data/movie", k=16, w=-1, scenes="none", jitter=0.0,
                              tau=0.0, res="default", runlocal=False,
                              micro=False)
  config = pretrain_config.default_config()
  config.data.dataset = arg.dataset.split("+")
  config.data.k = arg.k
  config.data.w = arg.w
  config.data.scenes = arg.scenes
  config.data.color_jitter = arg.jitter
  config.data.seed = config.seed
  if arg.res == "high":
    config.data.short_side, config.data.crop_size = 224, 200
  elif arg.res != "default":
    raise ValueError(f"res={arg.res!r}: expected 'default' or 'high'")
  if arg.tau > 0:
    config.loss.normalize, config.loss.temperature = True, arg.tau

  if arg.runlocal:
    config.model.video.name = "r2plus1d_tiny"
    config.model.audio.name = "resnet_audio_tiny"
    config.model.embed_dim = 64
    config.model.dtype = "float32"
    config.data.k = min(arg.k, 4)
    config.data.num_frames = 8
    config.data.short_side, config.data.crop_size = 64, 56
    config.data.prefetch = 2
    config.batch_size = 16
    config.num_epochs = 2
    config.log_every_steps = 5
    config.checkpoint_every_steps = 50
    config.keep_every_steps = 0
  if arg.micro:
    for kind in ("video", "audio"):
      config.model[kind].stage_sizes, config.model[kind].stage_widths = (1,), (8,)
  return config
