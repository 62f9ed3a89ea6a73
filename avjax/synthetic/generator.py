r"""Synthetic long-form titles: movies and TV episodes with known events, scenes and artifacts.

The generated titles carry what the paper (Section 3) is about, with ground truth:
  * content-exclusive artifacts that persist through a title, and through all
    episodes of a show: a color palette and grade, letterbox bars, a recurring
    "main character" sprite with its own voice, theme music, a drone and mains hum;
  * one semantic audio-visual event per snippet-sized span, from C classes, where
    shape goes with timbre, motion with onset rhythm, size with pitch, and the
    object flashes, jumps or turns exactly when its sound starts;
  * scenes: runs of spans with one background and layout (a "location", which may
    recur later in the title), separated by hard cuts; with Options.scene_shots, several
    shots per scene (cuts between framings of the same set: the camera zooms and pans).
`artifact_strength` scales every title-exclusive cue (0 removes them all), a knob for
studying how easy cross-title negatives are.

Everything is a function of the seed and the options: plans, labels, and the rendered
pictures and sound bit for bit. The encoded files decode to nearly the same frames (the
H.264 encoder may round a few pixel levels differently from one encode to the next).

Output of `generate` (python -m avjax.synthetic):
  DIR/movies/<title>.mp4           H.264 + AAC (or FLAC: Options.audio_codec)
  DIR/shows/<show>/<episode>.mp4   title id <show>_<episode>
  DIR/titles.csv                   title_id, kind, show_id, genres ('|'-separated), path
  DIR/labels.json                  per title: events (title, start, end, class), scenes and
                                   its genre look (Options.genre_looks; null without)
"""

import contextlib
import csv
import dataclasses
import multiprocessing
import os

from absl import logging

from avjax import console
from avjax import fileio
from avjax.synthetic import render as synthetic_render
from avjax.synthetic.plan import GENRE_LOOKS, Options, event_class, plan_collection

LABELS = "labels.json"
TITLES_CSV = "titles.csv"


def labels(plans, *, seed, options=Options()):
  """Ground truth of a collection: classes, and per title its events and scenes."""
  titles = {}
  for p in plans:
    titles[p["id"]] = dict(
        kind=p["kind"], show=p["show"], genres=p["genres"], look=p.get("look"), path=p["path"],
        duration=p["duration"], sample_rate=p["style"]["sample_rate"],
        channels=p["style"]["channels"],
        events=[dict(title=p["id"], start=e["start"], end=e["end"], **{"class": e["cls"]},
                     span=e["span"], onsets=e["onsets"]) for e in p["events"]],
        scenes=[dict(start=s["start"], end=s["end"], location=s["location"],
                     character=s["character"], shots=s.get("shots", [s["start"]]))
                for s in p["scenes"]],
    )
  return dict(format_version=1, seed=seed, snippet_seconds=options.snippet_seconds,
              artifact_strength=options.artifact_strength,
              classes=[event_class(c) for c in range(options.classes)],
              looks=[dict(look) for look in GENRE_LOOKS[:options.genre_looks]],
              options={k: list(v) if isinstance(v, tuple) else v
                       for k, v in dataclasses.asdict(options).items()},
              titles=titles)


def write_titles_csv(path, plans):
  with fileio.atomic_path(path) as tmp:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
      w = csv.writer(f)
      w.writerow(["title_id", "kind", "show_id", "genres", "path"])
      for p in plans:
        w.writerow([p["id"], p["kind"], p["show"] or "", "|".join(p["genres"]), p["path"]])


def _render_one(args):
  plan, output, options = args
  synthetic_render.render_title(plan, os.path.join(output, plan["path"]), options)
  return plan["path"], plan["duration"]


def generate(output, *, movies, shows, episodes, minutes, seed, options=Options(), workers=1,
             progress=True):
  """Writes a synthetic collection to `output` (titles rendered in `workers` processes, a
  progress bar over them); returns its plans. Each title's file is a function of its plan
  alone, so `workers` changes nothing in the output."""
  plans = plan_collection(movies=movies, shows=shows, episodes=episodes, minutes=minutes,
                          seed=seed, options=options)
  bar = console.progress(total=sum(p["duration"] for p in plans) / 60, unit="min",
                         desc="synthetic titles", disable=not progress,
                         bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} min of content "
                                    "[{elapsed}<{remaining}]{postfix}")
  jobs = [(plan, output, options) for plan in plans]
  with contextlib.ExitStack() as stack:  # a failure or Ctrl-C stops the workers at once
    if workers > 1:
      pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
      done = pool.imap_unordered(_render_one, jobs)
    else:
      done = map(_render_one, jobs)
    for i, (path, duration) in enumerate(done):
      logging.info("wrote %s (%d/%d, %.1f min)", path, i + 1, len(plans), duration / 60,
                   extra=console.FILE_ONLY)
      bar.set_postfix_str(f"{i + 1}/{len(plans)} titles", refresh=False)
      bar.update(min(duration / 60, bar.total - bar.n))  # no float overshoot
  bar.close()
  write_titles_csv(os.path.join(output, TITLES_CSV), plans)
  fileio.write_json(os.path.join(output, LABELS), labels(plans, seed=seed, options=options))
  return plans
