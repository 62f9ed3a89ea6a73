r"""Table 5: the runs compared with the state of the art, at high resolution (224 -> 200).

  python launch/sweep.py configs/sweeps/comparison.py:movie=data/movie,tv=data/tv \
      --mode=slurm --workdir_root=runs/comparison

Runs (4; w = Mn, res=high):
  movie_k16_2x     Movie, k = 16, twice the epochs (20), to match the number of gradient
                   updates of the Movie+TV runs, whose dataset is twice as large
  movie_tv_k{8,16,32}  Movie+TV, k in {8, 16, 32}, the usual 10 epochs

Sweep args (comma-separated, after the colon):
  movie=PATH   Movie dataset dir (required)
  tv=PATH      TV dataset dir: the Movie+TV runs (left out when not given)
  runlocal     the tiny configs/pretrain.py variant (k capped at 4, 2 epochs -> 4)
"""

from avjax import config_args

MOVIE_TV_KS = (8, 16, 32)
DATASET_ARGS = ("movie", "tv")


def get_sweep(arg=None):
  arg = config_args.parse_arg(arg, movie="", tv="", runlocal=False)
  if not arg.movie:
    raise ValueError("no dataset given: add movie=PATH (and tv=PATH) after the colon")
  local = ",runlocal" if arg.runlocal else ""
  movie_k16 = f"configs/pretrain.py:dataset={arg.movie},k=16,res=high{local}"
  # Twice that config's epochs (Section 7.2: 10; fewer with runlocal).
  runs = [dict(name="movie_k16_2x", config=movie_k16,
               overrides={"num_epochs": 2 * config_args.load_config(movie_k16).num_epochs})]
  runs += [dict(name=f"movie_tv_k{k}",
                config=f"configs/pretrain.py:dataset={arg.movie}+{arg.tv},k={k},res=high{local}",
                overrides={})
           for k in MOVIE_TV_KS if arg.tv]
  return runs
