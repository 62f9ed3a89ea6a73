r"""UCF101 action recognition with the video encoder f (paper Sections 4.1, 7.2).

  python -m avjax.prepare_downstream --dataset=ucf101 --root=/data/UCF101 --output=data/ucf101
  python -m avjax.finetune --config=configs/downstream/ucf101.py:data=data/ucf101 \
      --config.init=runs/movie_k16/export --workdir=runs/movie_k16/ucf101_split1

Config args (comma-separated, after the colon):
  data=PATH          the prepared directory (source=records) or the TFDS data_dir (source=tfds)
  split=1            the official split, 1-3
  mode=finetune      finetune (the paper's protocol) or linear (frozen f, linear classifier)
  init=EXPORT_DIR    an export of a pretraining run; "" with no init_torch: from scratch
  source=records     records (prepared directory) or tfds (the TFDS ucf101 builder)
  res=default        default (jitter [181, 226], crop 158) or high (Table 5: [213, 266], 200)
  runlocal           tiny encoder, clips and step count: runs in a minute on a CPU

Any field can also be overridden, e.g. `--config.split=2 --config.init_torch=r2plus1d.npz`.
"""

from avjax import config_args
from avjax.downstream import config as downstream_config


def get_config(arg=None):
  arg = config_args.parse_arg(arg, data="data/ucf101", split=1, mode="finetune", init="",
                              source="records", res="default",
                              runlocal=False)
  config = downstream_config.protocol_config("ucf101", arg)  # Section 7.2
  config.data.source = arg.source
  return config
