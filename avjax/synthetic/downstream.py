r"""Synthetic downstream sets in the standard layouts of UCF101, HMDB51 and ESC-50.

`generate_downstream` (python -m avjax.synthetic --downstream=ucf101|hmdb51|esc50) writes a
labelled set of short clips that `python -m avjax.prepare_downstream` reads like the real
dataset, so that an export of the sampling study (docs/study_sampling.md) can be
fine-tuned and compared with training from scratch (docs/downstream.md, "Does pretraining
transfer?").

What a clip is:
  * its class is an event class of the generator (synthetic_plan.event_class): every
    snippet-sized span of the clip holds one event of that class, with the shape, motion,
    timbre and rhythm the pretraining events carry, so the labels have the semantics that
    pretraining saw (classes 0 .. C-1, C = the genres preset's 5 by default);
  * it is SPANS snippets long (6.4 s by default), rendered at the resolution of the study's
    preset (48x32 at 5 fps; audio at 24 kHz);
  * its look and sound are drawn fresh from the set's own seeds (never the pretraining
    set's), and a group of clips shares one look (palette, grade, character, music), as
    UCF101's groups share an actor and a setting. Groups decide the splits: a group is never
    on both sides of a split.

The distribution shift against the pretraining set (the frozen "genres" preset), SHIFT:
  * other palettes and music: no genre looks, so palettes come from the whole hue wheel
    and the music from the default scale and instrument, not from the 4 genre families;
  * other lighting: sets from darker to brighter (light 0.5-1.3 against 0.75-1.15);
  * a noisier picture: film grain (6 levels of 8 bits; the pretraining titles have none);
  * a lower signal-to-noise ratio of sound: events a quarter as loud (peak 0.12 against
    0.5) in room tone 5-20x louder and of varied colour (level 0.05-0.2, cut-off 0.5-4 kHz,
    against 0.01 at 1 kHz).
The events' pictures (colour, size, place, motion) and their timbres and rhythms are drawn
as in pretraining.

Layouts (avjax/data/layouts.py reads them):
  ucf101  ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi, ROOT/ucfTrainTestlist/ (classInd.txt,
          trainlist0s.txt, testlist0s.txt): split s tests the s-th third of the groups
  hmdb51  ROOT/<class>/<clip>.avi, ROOT/testTrainMulti_7030_splits/<class>_test_split<s>.txt
          (1 = train, 2 = test): split s tests the s-th third of the groups, about 30%
  esc50   ROOT/audio/<fold>-<group>-<take>-<target>.wav (mono 16-bit), ROOT/meta/esc50.csv:
          the groups of a class are spread evenly over the 5 folds
The video sets are H.264 in AVI without sound (only f is evaluated on them); ROOT/labels.json
holds every clip's class, group, events and the options it was rendered with.
"""

import csv
import dataclasses
import multiprocessing
import os
import wave

import numpy as np
from absl import logging

from avjax import console
from avjax import fileio
from avjax.data import layouts
from avjax.synthetic import presets as synthetic_presets
from avjax.synthetic import render as synthetic_render
from avjax.synthetic.plan import event_class, plan_collection, rng_for
from avjax.media import writer as media_writer

LABELS = "labels.json"
BASE_PRESET = "genres"  # the pretraining set of study v3: the shift is measured against it
SHIFT = dict(genre_looks=0, light=(0.5, 1.3), grain=6.0, event_level=0.12,
             room_level=(0.05, 0.2), room_cutoff=(500.0, 4000.0))
# A different seed per set: no clip shares a look with the pretraining set (seed 0) or
# with the other sets.
SET_SEEDS = {"ucf101": 101, "hmdb51": 51, "esc50": 50}


@dataclasses.dataclass(frozen=True)
class Sizes:
  """How big a set is: classes x groups x clips per group, each `spans` snippets long."""
  classes: int = 5
  groups: int = 12  # per class; UCF101/HMDB51: multiples of 3, ESC-50: of 5
  clips_per_group: int = 5
  spans: int = 2

  def check(self, dataset):
    parts = len(layouts.SPLITS[dataset])
    if self.groups < parts or self.groups % parts:
      raise ValueError(f"{dataset}: groups={self.groups} per class must be a positive "
                       f"multiple of its {parts} splits")
    if min(self.classes, self.clips_per_group, self.spans) < 1:
      raise ValueError(f"sizes must be positive: {self}")


# The sizes of the transfer table's sets (docs/downstream.md): 375, 240 and 400 clips, of
# which 125, 80 and 80 are the test clips of split 1.
SIZES = {"ucf101": Sizes(groups=15, clips_per_group=5),
         "hmdb51": Sizes(groups=12, clips_per_group=4),
         "esc50": Sizes(groups=10, clips_per_group=8)}


def options_for(**overrides):
  """The Options of the downstream sets: the base preset's look with SHIFT (and overrides)."""
  return synthetic_presets.preset(BASE_PRESET, **dict(SHIFT, **overrides))["options"]


def class_names(dataset, classes):
  """Names of event classes 0 .. classes-1 in the dataset's style: what is seen (video:
  shape and motion, 'DiscSweep' / 'disc_sweep') or heard (audio: timbre and rhythm)."""
  names = []
  for c in range(classes):
    e = event_class(c)
    octave = f"{c // 15 + 1}" if classes > 15 else ""
    if dataset == "ucf101":
      names.append(f"{e['shape'].title()}{e['motion'].title()}{octave}")
    elif dataset == "hmdb51":
      names.append(f"{e['shape']}_{e['motion']}{octave}")
    else:
      names.append(f"{e['timbre']}_{int(round(1000 * e['onset_interval']))}ms{octave}")
  return names


def _seed(*key):
  return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0] >> 1)


def plan_group(dataset, c, g, sizes, options, seed=0):
  """The clips of group g of class c: one look shared by the group, every event of class c.

  Each clip is planned as a short title and cut to exactly `sizes.spans` snippets.
  """
  L, fps = options.snippet_seconds, options.fps
  seconds = sizes.spans * L
  plans = plan_collection(movies=sizes.clips_per_group, shows=0, episodes=0,
                          minutes=seconds / 0.89 / 60,  # at least `spans` spans each
                          seed=_seed(seed, SET_SEEDS[dataset], c, g), options=options)
  cls = event_class(c)
  for j, plan in enumerate(plans):
    plan["style"] = plans[0]["style"]  # the group's look
    plan["num_frames"] = int(round(seconds * fps))
    plan["duration"] = plan["num_frames"] / fps
    scenes = [s for s in plan["scenes"] if s["start"] < plan["duration"] - 1e-6]
    scenes[-1]["end"] = plan["duration"]
    plan["scenes"] = scenes
    events = plan["events"][:sizes.spans]
    for e in events:  # the class's own rhythm and pitch, redrawn from the event's seed
      rng = rng_for(e["seed"], 11)
      interval = cls["onset_interval"]
      first = e["start"] + rng.uniform(0.05, interval)
      e["cls"], e["pitch_hz"] = c, cls["pitch_hz"] / e["size"]
      e["onsets"] = [round(float(o), 6) for o in np.arange(first, e["end"] - 0.1, interval)]
    plan["events"] = events
    plan["id"] = f"c{c:02d}_g{g + 1:02d}_{j + 1:02d}"
  return plans


# ---------------------------------------------------------------------------
# Files of one clip, and the split files of each layout.


def _clip_path(dataset, names, c, g, j):
  """(path under ROOT, group-fold) of clip j of group g of class c."""
  name = names[c]
  if dataset == "ucf101":
    return os.path.join("UCF-101", name, f"v_{name}_g{g + 1:02d}_c{j + 1:02d}.avi")
  if dataset == "hmdb51":
    return os.path.join(name, f"{name}_g{g + 1:02d}_{j + 1:02d}.avi")
  fold = g % 5 + 1
  take = chr(ord("A") + j) if j < 26 else f"Z{j}"
  return os.path.join("audio", f"{fold}-{1000 * (c + 1) + g + 1}-{take}-{c}.wav")


def _render_one(job):
  plan, path, options, kind = job
  if kind == "video":
    with media_writer.MediaWriter(path, width=options.width, height=options.height,
                                  fps=options.fps, channels=0, crf=options.crf,
                                  preset=options.preset) as writer:
      for frames, _ in synthetic_render.render_chunks(plan, options):
        writer.write_frames(frames)
  else:
    audio = np.concatenate([a for _, a in synthetic_render.render_chunks(plan, options)], axis=1)
    pcm = np.round(np.clip(audio.mean(0), -1, 1) * 32767).astype("<i2")
    with fileio.atomic_path(path) as tmp:
      with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(plan["style"]["sample_rate"])
        w.writeframes(pcm.tobytes())
  return path


def _third(g, groups, s):
  """Is group g in the s-th third of the groups (the test groups of split s)?"""
  per = groups // 3
  return (s - 1) * per <= g < s * per


def _write_text(path, lines):
  with fileio.atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8", newline="") as f:
      f.writelines(line + "\r\n" for line in lines)  # as the real lists (CRLF)


def write_split_files(dataset, root, names, clips, sizes):
  """The split files of the layout; `clips` is [(class, group, clip, path under ROOT)]."""
  if dataset == "ucf101":
    lists = os.path.join(root, "ucfTrainTestlist")
    _write_text(os.path.join(lists, "classInd.txt"),
                [f"{i + 1} {n}" for i, n in enumerate(names)])
    for s in layouts.SPLITS[dataset]:
      rel = [(c, g, p.split(os.sep, 1)[1].replace(os.sep, "/")) for c, g, _, p in clips]
      _write_text(os.path.join(lists, f"trainlist{s:02d}.txt"),
                  [f"{p} {c + 1}" for c, g, p in rel if not _third(g, sizes.groups, s)])
      _write_text(os.path.join(lists, f"testlist{s:02d}.txt"),
                  [p for c, g, p in rel if _third(g, sizes.groups, s)])
  elif dataset == "hmdb51":
    split_dir = os.path.join(root, "testTrainMulti_7030_splits")
    for c, name in enumerate(names):
      mine = [(g, os.path.basename(p)) for cc, g, _, p in clips if cc == c]
      for s in layouts.SPLITS[dataset]:
        _write_text(os.path.join(split_dir, f"{name}_test_split{s}.txt"),
                    [f"{f} {2 if _third(g, sizes.groups, s) else 1} " for g, f in mine])
  else:
    meta = os.path.join(root, "meta", "esc50.csv")
    os.makedirs(os.path.dirname(meta), exist_ok=True)
    with fileio.atomic_path(meta) as tmp:
      with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for c, g, _, p in clips:
          name = os.path.basename(p)
          fold, src, take, _ = os.path.splitext(name)[0].split("-")
          w.writerow([name, fold, c, names[c], "False", src, take])


def generate_downstream(dataset, output, *, sizes=None, seed=0, workers=1, progress=True,
                        **option_overrides):
  """Writes the synthetic `dataset` (ucf101, hmdb51 or esc50) in its standard layout.

  Everything is a function of (dataset, sizes, seed, options): `seed` 0 gives the transfer
  table's sets; another seed gives other clips of the same design. Returns the labels dict
  written to OUTPUT/labels.json.
  """
  if dataset not in layouts.DATASETS:
    raise ValueError(f"unknown downstream set {dataset!r}; known: {', '.join(layouts.DATASETS)}")
  sizes = sizes or SIZES[dataset]
  sizes.check(dataset)
  options = options_for(classes=max(sizes.classes, 1), **option_overrides)
  kind = layouts.KINDS[dataset]
  names = class_names(dataset, sizes.classes)
  clips, jobs, records = [], [], []
  for c in range(sizes.classes):
    for g in range(sizes.groups):
      for j, plan in enumerate(plan_group(dataset, c, g, sizes, options, seed)):
        rel = _clip_path(dataset, names, c, g, j)
        clips.append((c, g, j, rel))
        jobs.append((plan, os.path.join(output, rel), options, kind))
        records.append(dict(path=rel.replace(os.sep, "/"), label=c, category=names[c],
                            group=g + 1, clip=j + 1, duration=plan["duration"],
                            events=[dict(start=e["start"], end=e["end"], onsets=e["onsets"])
                                    for e in plan["events"]]))
  bar = console.progress(total=len(jobs), unit="clip", desc=f"synthetic {dataset}",
                         disable=not progress)
  if workers > 1:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      for _ in pool.imap_unordered(_render_one, jobs, chunksize=8):
        bar.update(1)
  else:
    for job in jobs:
      _render_one(job)
      bar.update(1)
  bar.close()
  write_split_files(dataset, output, names, clips, sizes)
  labels = dict(format_version=1, dataset=dataset, seed=seed, base_preset=BASE_PRESET,
                shift={k: list(v) if isinstance(v, tuple) else v for k, v in SHIFT.items()},
                sizes=dataclasses.asdict(sizes), classes=names,
                class_definitions=[event_class(c) for c in range(sizes.classes)],
                options={k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(options).items()},
                clips=records)
  fileio.write_json(os.path.join(output, LABELS), labels)
  logging.info("%s: %d clips of %d classes in %s", dataset, len(records), sizes.classes, output)
  return labels
