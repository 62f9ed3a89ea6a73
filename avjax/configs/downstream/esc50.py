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

from avjax import config_args
from avjax.downstream import config as downstream_config


def get_config(arg=None):
  arg = config_args.parse_arg(arg, data="data/esc50", split=1, mode="finetune", init="",
                              runlocal=False)
  config = downstream_config.protocol_config("esc50", arg)  # Section 7.2
  return config
