r"""Table 1: sample size k and sampling window w, pretraining on Movie and on TV.

  python launch/sweep.py configs/sweeps/sampling_k_w.py:movie=data/movie,tv=data/tv \
      --mode=local --workdir_root=runs/sampling_k_w

Runs (21; w=Mn is w=-1, no temporal constraint; k=1 is the i.i.d. baseline):
  Movie  k in {1, 4, 8, 16, 32, 64}, w = Mn
         k = 16, w in {64, 128, 256, 512, 1024, 2048}
         (k, w) in {(4, 4), (16, 16), (64, 64)}
  TV     k in {1, 8, 16}, w = Mn
         k = 8, w in {64, 128};  k = 16, w = 256

Sweep args (comma-separated, after the colon):
  movie=PATH   Movie dataset dir: the Movie runs
  tv=PATH      TV dataset dir: the TV runs
  runlocal     the tiny configs/pretrain.py variant (k is capped at 4 there)
The runs of a dataset that is not given are left out (no default paths: a sweep never
points runs at a dataset that was not named); at least one must be given.
"""

from avjax import config_args

MN = -1  # w = M_n: the whole title.
DATASET_ARGS = ("movie", "tv")

MOVIE_RUNS = (
    [(k, MN) for k in (1, 4, 8, 16, 32, 64)]
    + [(16, w) for w in (64, 128, 256, 512, 1024, 2048)]
    + [(4, 4), (16, 16), (64, 64)])
TV_RUNS = [(1, MN), (8, MN), (16, MN), (8, 64), (8, 128), (16, 256)]


def _run(dataset_name, dataset, k, w, runlocal):
  w_name = "" if k == 1 else "_wMn" if w == MN else f"_w{w}"
  args = f"dataset={dataset},k={k},w={w}" + (",runlocal" if runlocal else "")
  return dict(name=f"{dataset_name}_k{k}{w_name}", config=f"configs/pretrain.py:{args}",
              overrides={})


def get_sweep(arg=None):
  arg = config_args.parse_arg(arg, movie="", tv="", runlocal=False)
  if not (arg.movie or arg.tv):
    raise ValueError("no dataset given: add movie=PATH and/or tv=PATH after the colon")
  return ([_run("movie", arg.movie, k, w, arg.runlocal) for k, w in MOVIE_RUNS if arg.movie]
          + [_run("tv", arg.tv, k, w, arg.runlocal) for k, w in TV_RUNS if arg.tv])
