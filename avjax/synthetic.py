r"""Writes synthetic movies and TV episodes with ground-truth labels.

  python -m avjax.synthetic --output=/tmp/avsynth --movies=4 --shows=2 --episodes=3 \
      --minutes=2 --seed=0

Then `python -m avjax.ingest --input=/tmp/avsynth --output=DATASET_DIR` reads it
like any collection (the generated titles.csv names each title's kind and show).
"""

import os
import time

from absl import app
from absl import flags
from absl import logging

from avjax import console
from avjax.ingest import synthetic
from avjax.ingest import synthetic_plan

flags.DEFINE_string("output", None, "Folder to write the titles, titles.csv and labels.json to.",
                    required=True)
flags.DEFINE_integer("movies", 4, "Number of movies.")
flags.DEFINE_integer("shows", 2, "Number of TV shows.")
flags.DEFINE_integer("episodes", 3, "Episodes per show.")
flags.DEFINE_float("minutes", 2.0, "Minutes per title (each varies by up to 10%).")
flags.DEFINE_integer("seed", 0, "Everything generated is a function of the seed and the flags.")
flags.DEFINE_integer("classes", synthetic.Options.classes,
                     f"Event classes C (at most {synthetic_plan.MAX_CLASSES}).")
flags.DEFINE_float("artifact_strength", synthetic.Options.artifact_strength,
                   "Scale of the title-exclusive artifacts; 0 removes them.")
flags.DEFINE_integer("width", synthetic.Options.width, "Frame width.")
flags.DEFINE_integer("height", synthetic.Options.height, "Frame height.")
flags.DEFINE_float("fps", synthetic.Options.fps, "Source frame rate.")
flags.DEFINE_integer("sample_rate", synthetic.Options.sample_rate,
                     "Audio rate; 0 lets each title pick 48 kHz or 44.1 kHz.")
flags.DEFINE_float("grain", synthetic.Options.grain, "Film grain (std of 8-bit levels).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  console.setup()
  options = synthetic.Options(width=f.width, height=f.height, fps=f.fps,
                              sample_rate=f.sample_rate, classes=f.classes,
                              artifact_strength=f.artifact_strength, grain=f.grain)
  start = time.time()
  plans = synthetic.generate(f.output, movies=f.movies, shows=f.shows, episodes=f.episodes,
                             minutes=f.minutes, seed=f.seed, options=options)
  minutes = sum(p["duration"] for p in plans) / 60
  logging.info("%d titles, %.1f min of content in %.1f s, in %s", len(plans), minutes,
               time.time() - start, f.output, extra=console.FILE_ONLY)
  console.done(f"{len(plans)} titles, {minutes:.1f} min of content",
               titles=os.path.abspath(f.output))


if __name__ == "__main__":
  app.run(main)
