r"""Table 4: genre distribution of a fixed budget of 1,600 pretraining movies, at 112x112.

  python launch/sweep.py configs/sweeps/genres.py:movie=data/movie \
      --mode=local --workdir_root=runs/genres

Runs (4; Movie, k = 16, w = Mn; every run draws the same number of movies):
  AHTRS_natural  {Action, Horror, Thriller, Romance, Sci-Fi}, natural (non-uniform) mix
  DC_natural     {Drama, Comedy}, natural mix
  all_uniform    all seven genres, the same number of movies from each
  all_natural    all seven genres, natural mix
"Natural" keeps the genres' shares in the dataset; "uniform" takes budget/7 from each.
The selection is made by the input pipeline from the manifest's per-title genres
(config.data.genres, .title_budget, .genre_mix).

Resolution: the paper ran this table at 112x112 crops; we crop 112 from a 134-px shorter
side, the same 1.2 ratio as the default 190 -> 158.

Sweep args (comma-separated, after the colon):
  movie=PATH   Movie dataset dir (required)
  budget=N     number of movies per run (default 1600; 8 with runlocal)
  runlocal     the tiny configs/pretrain.py variant (keeps its own tiny resolution)
"""

from avjax import config_args

DRAMA, COMEDY, ACTION, HORROR, THRILLER, ROMANCE, SCIFI = (
    "Drama", "Comedy", "Action", "Horror", "Thriller", "Romance", "Sci-Fi")
ALL_GENRES = (DRAMA, COMEDY, ACTION, HORROR, THRILLER, ROMANCE, SCIFI)

GENRE_RUNS = [
    ("AHTRS_natural", (ACTION, HORROR, THRILLER, ROMANCE, SCIFI), "natural"),
    ("DC_natural", (DRAMA, COMEDY), "natural"),
    ("all_uniform", ALL_GENRES, "uniform"),
    ("all_natural", ALL_GENRES, "natural"),
]
TITLE_BUDGET = 1600
SHORT_SIDE, CROP_SIZE = 134, 112
DATASET_ARGS = ("movie",)


def get_sweep(arg=None):
  arg = config_args.parse_arg(arg, movie="", budget=0, runlocal=False)
  if not arg.movie:
    raise ValueError("no dataset given: add movie=PATH after the colon")
  budget = arg.budget or (8 if arg.runlocal else TITLE_BUDGET)
  config = f"configs/pretrain.py:dataset={arg.movie},k=16" + (",runlocal" if arg.runlocal else "")
  runs = []
  for name, genres, mix in GENRE_RUNS:
    overrides = {"data.genres": genres, "data.title_budget": budget, "data.genre_mix": mix}
    if not arg.runlocal:
      overrides.update({"data.short_side": SHORT_SIDE, "data.crop_size": CROP_SIZE})
    runs.append(dict(name=name, config=config, overrides=overrides))
  return runs
