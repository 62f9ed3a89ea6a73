r"""Table 2: color jitter strength sigma, and an l2-normalized loss with temperature tau.

  python launch/sweep.py configs/sweeps/jitter_tau.py:movie=data/movie \
      --mode=local --workdir_root=runs/jitter_tau

Runs (7; Movie, w = Mn; sigma = 0 and the unnormalized loss unless stated):
  (k, sigma) in {(1, 0), (16, 0), (1, 1.0), (16, 0.5), (16, 1.0)}
  (k, tau)   in {(16, 0.07), (16, 0.30)}
The first two rows are Table 1's k=1 and k=16 (w = Mn) runs, repeated so that the table
comes out of one sweep.

Sweep args (comma-separated, after the colon):
  movie=PATH   Movie dataset dir (required)
  runlocal     the tiny configs/pretrain.py variant (k is capped at 4 there)
"""

from avjax import config_args

JITTER_RUNS = [(1, 0.0), (16, 0.0), (1, 1.0), (16, 0.5), (16, 1.0)]
TAU_RUNS = [(16, 0.07), (16, 0.30)]
DATASET_ARGS = ("movie",)


def _run(name, args, runlocal):
  args += ",runlocal" if runlocal else ""
  return dict(name=name, config=f"configs/pretrain.py:{args}", overrides={})


def get_sweep(arg=None):
  arg = config_args.parse_arg(arg, movie="", runlocal=False)
  if not arg.movie:
    raise ValueError("no dataset given: add movie=PATH after the colon")
  data = f"dataset={arg.movie}"
  return ([_run(f"k{k}_jitter{sigma:g}", f"{data},k={k},jitter={sigma:g}", arg.runlocal)
           for k, sigma in JITTER_RUNS]
          + [_run(f"k{k}_tau{tau:.2f}", f"{data},k={k},tau={tau:.2f}", arg.runlocal)
             for k, tau in TAU_RUNS])
