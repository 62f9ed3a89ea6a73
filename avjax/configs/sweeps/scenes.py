r"""Scene-aware sampling beside Table 1's windows: k = 16 with w = M_n, w = 16, and the two
scene policies (paper Section 4.2's future work; docs/study_sampling.md has the measurement).

  python launch/sweep.py configs/sweeps/scenes.py:movie=data/movie \
      --mode=local --workdir_root=runs/scenes

Runs (4 per dataset; the dataset needs scene ids: ingest writes them, and
`python -m avjax.ingest.add_scenes --dataset=DIR` adds them to an older dataset):
  k = 16, w = M_n     no temporal constraint (the paper's best)
  k = 16, w = 16      adjacent snippets (near-identical negatives)
  k = 16, distinct    16 different scenes of the title
  k = 16, adaptive    16 consecutive scenes: the window follows the cutting

Sweep args (comma-separated, after the colon):
  movie=PATH   Movie dataset dir
  tv=PATH      TV dataset dir
  k=16         snippets per title
  runlocal     the tiny configs/pretrain.py variant (k is capped at 4 there)
At least one dataset must be given.
"""

from avjax import config_args

POLICIES = (("wMn", -1, "none"), ("w{k}", None, "none"), ("distinct", -1, "distinct"),
            ("adaptive", -1, "adaptive"))


def get_sweep(arg=None):
  arg = config_args.parse_arg(arg, movie="", tv="", k=16, runlocal=False)
  if not (arg.movie or arg.tv):
    raise ValueError("no dataset given: add movie=PATH and/or tv=PATH after the colon")
  runs = []
  for name, dataset in (("movie", arg.movie), ("tv", arg.tv)):
    if not dataset:
      continue
    for suffix, w, scenes in POLICIES:
      w = arg.k if w is None else w
      args = f"dataset={dataset},k={arg.k},w={w},scenes={scenes}"
      runs.append(dict(name=f"{name}_k{arg.k}_{suffix.format(k=arg.k)}",
                       config="configs/pretrain.py:" + args + (",runlocal" if arg.runlocal else ""),
                       overrides={}))
  return runs
