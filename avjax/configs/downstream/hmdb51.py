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

from avjax import config_args
from avjax.downstream import config as downstream_config


def get_config(arg=None):
  arg = config_args.parse_arg(arg, data="data/hmdb51", split=1, mode="finetune", init="",
                              res="default", runlocal=False)
  config = downstream_config.protocol_config("hmdb51", arg)  # Section 7.2
  return config
