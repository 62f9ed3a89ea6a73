r"""Writes synthetic movies and TV episodes with ground-truth labels.

  python -m avjax.synthetic --output=/tmp/avsynth --movies=4 --shows=2 --episodes=3 \
      --minutes=2 --seed=0
  python -m avjax.synthetic --output=/tmp/study --preset=study --workers=2
  python -m avjax.synthetic --output=/tmp/small --preset=study --movies=20 --shows=2

  python -m avjax.synthetic --downstream=ucf101 --output=/tmp/syn_ucf101 [--workers=2]

A preset (avjax/synthetic/presets.py) sets the sizes and the look; any flag given on
the command line overrides its field, and --option=NAME=VALUE any other Options field. Then
`python -m avjax.ingest --input=/tmp/avsynth --output=DATASET_DIR` reads it like any
collection (the generated titles.csv names each title's kind and show); a preset logs the
ingest flags it is made for. --downstream=ucf101|hmdb51|esc50 writes instead a set of short
labelled clips in that dataset's standard layout (avjax/synthetic/downstream.py), for
`python -m avjax.prepare_downstream`; --seed and --option apply to it too.
"""

import ast
import dataclasses
import os
import time

from absl import app
from absl import flags
from absl import logging

from avjax import console
from avjax.data import layouts
from avjax.synthetic import downstream as synthetic_downstream
from avjax.synthetic import generator as synthetic
from avjax.synthetic import plan as synthetic_plan
from avjax.synthetic import presets as synthetic_presets

flags.DEFINE_string("output", None, "Folder to write the titles, titles.csv and labels.json to.",
                    required=True)
flags.DEFINE_string("preset", None, f"Named sizes and look, one of "
                    f"{sorted(synthetic_presets.PRESETS)}; flags given explicitly override "
                    "its fields.")
flags.DEFINE_enum("downstream", None, list(layouts.DATASETS),
                  "Write a downstream set in this dataset's standard layout (short clips, "
                  "one event class each) instead of long-form titles.")
flags.DEFINE_integer("workers", 1, "Titles rendered in parallel processes (same output).")
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
flags.DEFINE_multi_string("option", [], "Any other Options field, NAME=VALUE with VALUE a "
                          "Python literal, e.g. --option=event_scale=2 "
                          "--option='event_x=(0.3, 0.7)'; repeatable.")

_OPTIONS = ("classes", "artifact_strength", "width", "height", "fps", "sample_rate", "grain")


def parse_options(items):
  """--option NAME=VALUE items as a dict of Options fields."""
  fields = {f.name for f in dataclasses.fields(synthetic.Options)}
  out = {}
  for item in items:
    name, sep, value = item.partition("=")
    if not sep or name not in fields:
      raise ValueError(f"--option={item!r}: expected NAME=VALUE with NAME an Options field "
                       f"({', '.join(sorted(fields))})")
    try:
      out[name] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[name] = value  # a bare string, e.g. event_color=any
  return out


def collection_from_flags(f):
  """dict(movies, shows, episodes, minutes, options[, ingest]) from the flags and --preset."""
  extra = parse_options(f.option)
  if f.preset:
    given = {name: f[name].value for name in synthetic_presets.SIZES + _OPTIONS
             if f[name].present}
    return synthetic_presets.preset(f.preset, **given, **extra)
  options = synthetic.Options(**{name: f[name].value for name in _OPTIONS}, **extra)
  return dict({name: f[name].value for name in synthetic_presets.SIZES}, options=options)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  console.setup()
  if f.downstream:
    _downstream(f)
    return
  try:
    collection = collection_from_flags(f)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  made_for = collection.pop("ingest", None)
  start = time.time()
  plans = synthetic.generate(f.output, seed=f.seed, workers=f.workers, **collection)
  minutes = sum(p["duration"] for p in plans) / 60
  logging.info("%d titles, %.1f min of content in %.1f s, in %s", len(plans), minutes,
               time.time() - start, f.output, extra=console.FILE_ONLY)
  if made_for:
    logging.info("preset %s is made for: python -m avjax.ingest --input=%s %s", f.preset,
                 f.output, " ".join(f"--{k}={v}" for k, v in made_for.items()))
  console.done(f"{len(plans)} titles, {minutes:.1f} min of content",
               titles=os.path.abspath(f.output))


def _downstream(f):
  if f.preset:
    raise app.UsageError("--downstream and --preset are exclusive")
  try:
    options = parse_options(f.option)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  start = time.time()
  labels = synthetic_downstream.generate_downstream(f.downstream, f.output, seed=f.seed,
                                                    workers=f.workers, **options)
  console.done(f"{f.downstream}: {len(labels['clips'])} clips of {len(labels['classes'])} "
               f"classes in {time.time() - start:.0f} s; prepare with python -m "
               f"avjax.prepare_downstream --dataset={f.downstream} --root={f.output} "
               "--fps=5 --short_side=32 --output=...", root=os.path.abspath(f.output))


if __name__ == "__main__":
  app.run(main)
