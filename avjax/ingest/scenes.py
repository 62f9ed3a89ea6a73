"""Scenes of a title: its shots grouped into runs that show one set, and per-snippet ids.

A scene is a run of consecutive shots of one location (the unit the paper, Section 4.2,
wants the sampling window to follow). Shots come from `shots.detect_shots`; each shot gets a
key histogram, the per-bin median of its frames' colour histograms (the median ignores
the frames an object passes through). A shot joins the scene before it when its key is
within `scene_threshold` (half-L1 distance, as for shots) of any shot of that scene, so
shot / reverse-shot cuts (A B A) stay one scene; otherwise it starts a new scene.

Each snippet m gets the shot and the scene its middle frame (m + 1/2) L falls in. The ids
live in the title's manifest entry, not in the records (docs/data_format.md), so records
stay byte-stable and `python -m avjax.ingest.add_scenes` can add them to an old dataset.
"""

import numpy as np

from avjax.ingest import shots as shots_lib


def key_histograms(boundaries, times, hists):
  """The key histogram of each shot: per-bin median over its frames; [num_shots, bins].

  boundaries: shot starts after the first (s from t0, sorted); times: frame times;
  hists: [num_frames, bins] frame histograms. A shot with no frame (shorter than a frame
  period) takes the frame nearest its start.
  """
  times, hists = np.asarray(times, np.float64), np.asarray(hists, np.float64)
  edges = np.concatenate([[-np.inf], np.asarray(boundaries, np.float64), [np.inf]])
  which = np.searchsorted(edges, times + 1e-6, side="right") - 1
  keys = []
  for i in range(len(edges) - 1):
    inside = which == i
    if inside.any():
      keys.append(np.median(hists[inside], axis=0))
    else:
      keys.append(hists[int(np.argmin(np.abs(times - max(edges[i], 0.0))))])
  return np.stack(keys)


def group_shots(keys, threshold):
  """Scene id of each shot: consecutive shots join while a key is within `threshold` of
  any key of the running scene."""
  scene_of, members, scene = [], [], -1
  for i, key in enumerate(keys):
    if members and min(shots_lib.change_score(key, keys[j]) for j in members) <= threshold:
      members.append(i)
    else:
      members, scene = [i], scene + 1
    scene_of.append(scene)
  return np.asarray(scene_of, np.int64)


def snippet_ids(boundaries, shot_scene, num_snippets, snippet_seconds):
  """(shot ids, scene ids) of the snippets: those of the shot at each snippet's middle."""
  middles = (np.arange(num_snippets) + 0.5) * snippet_seconds
  shot = np.searchsorted(np.asarray(boundaries, np.float64), middles, side="right")
  return shot.astype(np.int64), np.asarray(shot_scene, np.int64)[shot]


def structure(boundaries, times, hists, num_snippets, snippet_seconds, threshold):
  """Per-snippet shot and scene ids of a title, as stored in its manifest entry."""
  if len(times) == 0:
    raise ValueError("no frames: cannot group shots into scenes")
  keys = key_histograms(boundaries, times, hists)
  shot, scene = snippet_ids(boundaries, group_shots(keys, threshold), num_snippets,
                            snippet_seconds)
  # Renumber from 0 in time order over the snippets that exist (a shot or scene may fall
  # between two snippet middles and own none).
  return _dense(shot).tolist(), _dense(scene).tolist()


def _dense(ids):
  return np.unique(ids, return_inverse=True)[1].astype(np.int64)
