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

Any field can also be overridden on the command line, e.g. `--config.batch_size=256`.
"""

import ml_collections

from avjax import config_args
from avjax.evals import discrepancy
from avjax.data import config as data_config
from avjax.models import av


def get_config(arg=None):
  arg = config_args.parse_arg(arg, dataset="data/movie", k=16, w=-1, scenes="none", jitter=0.0, tau=0.0,
                              res="default", runlocal=False)
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = data_config.default_config()
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

  config.model = av.default_config()
  config.loss = ml_collections.ConfigDict(dict(normalize=arg.tau > 0, temperature=arg.tau or 1.0))

  # Section 7.2: batch 512, Adam, lr 1e-4 warming up linearly to 0.002 in the first epoch,
  # then cosine; 10 epochs.
  config.batch_size = 512
  config.num_epochs = 10
  config.total_steps = 0  # >0 overrides num_epochs
  config.optimizer = ml_collections.ConfigDict(dict(
      lr_init=1e-4, lr_peak=2e-3, lr_end=0.0, warmup_epochs=1.0, b1=0.9, b2=0.999, eps=1e-8,
      grad_clip_norm=0.0))

  config.log_every_steps = 50
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.keep_every_steps = 10000
  # A restart that changes data, model, loss, optimizer or batch is refused ("guard"), or
  # resumes and records the change in WORKDIR/config_history.jsonl ("allow_changes").
  config.resume = "guard"
  # Periodic held-out evaluations: module name under avjax -> every N steps (0 = off).
  config.evals = ml_collections.ConfigDict(dict(discrepancy=0))
  # Options of the discrepancy measures and probe (bins, smoothing, labels.json, ...).
  config.discrepancy = discrepancy.default_config()

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
  return config
