"""Shot and scene detection quality against a synthetic set's ground truth.

  python -m avjax.benchmark scenes --synthetic=SYN_DIR --dataset=DATASET_DIR [--record]

For every title of the dataset that has scene ids, its detected shot boundaries (the
manifest's `shots`) and scene boundaries (where `snippet_scenes` changes, at that snippet's
start) are matched one to one with the true ones of SYN_DIR/labels.json within +-1
snippet (3.2 s): precision = matched / detected, recall = matched / true, pooled over
titles. When PySceneDetect (`scenedetect`, with opencv-python) is installed, its
ContentDetector and AdaptiveDetector run on the same source files beside ours (shots), and
our grouping of shots into scenes runs on their shots too (scenes), so both detectors are
measured by the same rule.
"""

import os
import time

import numpy as np

from avjax import fileio
from avjax.data import records
from avjax.ingest import params as params_lib
from avjax.ingest import scenes as scenes_lib
from avjax.ingest import shots as shots_lib
from avjax.media import decode

TITLE = "Scene detection"


def match(detected, truth, tolerance):
  """(matched, detected, true): boundaries paired one to one, nearest first, within
  `tolerance` seconds."""
  pairs = sorted((abs(d - t), i, j) for i, d in enumerate(detected)
                 for j, t in enumerate(truth) if abs(d - t) <= tolerance)
  used_d, used_t = set(), set()
  for _, i, j in pairs:
    if i not in used_d and j not in used_t:
      used_d.add(i)
      used_t.add(j)
  return len(used_d), len(detected), len(truth)


def true_boundaries(title_labels):
  """(shot starts, scene starts) of a synthetic title after its first, in seconds."""
  scenes = title_labels["scenes"]
  shot_starts = [s for scene in scenes for s in scene.get("shots", [scene["start"]])]
  return shot_starts[1:], [scene["start"] for scene in scenes[1:]]


def snippet_scene_boundaries(snippet_scenes, snippet_seconds):
  """The starts (s) of the snippets whose scene differs from the one before."""
  ids = np.asarray(snippet_scenes)
  return [float(m * snippet_seconds) for m in np.flatnonzero(np.diff(ids) != 0) + 1]


def _frame_histograms(path):
  """(times, histograms) of every frame of a source file, as ingest computes them."""
  times, hists = [], []
  with decode.open_container(path) as container:
    stream = decode.pick_stream(container.streams.video)
    for frame in container.decode(stream):
      times.append(float(frame.time))
      hists.append(shots_lib.frame_histogram(frame))
  t0 = times[0]
  return np.asarray(times) - t0, np.stack(hists)


# PySceneDetect's detectors at their default threshold and at a more sensitive one (the
# synthetic frames are small and flat, which its defaults are not tuned for).
PYSCENEDETECT = (("ContentDetector", 27.0), ("ContentDetector", 12.0),
                 ("AdaptiveDetector", 3.0), ("AdaptiveDetector", 1.5))


def pyscenedetect_shots(path, detector_name, threshold, min_seconds, fps):
  """Cut times (s) of one of PySceneDetect's detectors on a file, or None if it is not
  installed."""
  try:
    import scenedetect  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  min_len = max(1, int(round(min_seconds * fps)))
  if detector_name == "ContentDetector":
    detector = scenedetect.ContentDetector(threshold=threshold, min_scene_len=min_len)
  else:
    detector = scenedetect.AdaptiveDetector(adaptive_threshold=threshold,
                                            min_scene_len=min_len)
  scene_list = scenedetect.detect(path, detector)
  return [float(start.get_seconds()) for start, _ in scene_list[1:]]


def _pooled(counts):
  tp, det, true = (sum(c[i] for c in counts) for i in range(3))
  return dict(precision=tp / det if det else float("nan"),
              recall=tp / true if true else float("nan"), detected=det, true=true)


def measure(synthetic_dir, dataset_dir, *, with_pyscenedetect=True):
  """Pooled precision/recall per detector: {name: {"shots": ..., "scenes": ...}}."""
  labels = fileio.read_json(os.path.join(synthetic_dir, "labels.json"))["titles"]
  manifest = records.load_manifest(dataset_dir)
  params = manifest["params"]
  seconds = records.snippet_seconds(params)
  threshold = params.get("scene_threshold", params_lib.DEFAULT_PARAMS["scene_threshold"])
  counts = {}
  timing = {}
  for entry in manifest["titles"]:
    if "snippet_scenes" not in entry or entry["id"] not in labels:
      continue
    true_shots, true_scenes = true_boundaries(labels[entry["id"]])
    ours = counts.setdefault("avjax (colour histograms)", dict(shots=[], scenes=[]))
    ours["shots"].append(match(entry["shots"], true_shots, seconds))
    ours["scenes"].append(match(
        snippet_scene_boundaries(entry["snippet_scenes"], seconds), true_scenes, seconds))
    if not with_pyscenedetect:
      continue
    path = entry["source"]
    times = hists = None
    for name, detector_threshold in PYSCENEDETECT:
      start = time.perf_counter()
      cuts = pyscenedetect_shots(path, name, detector_threshold, params["min_shot_seconds"],
                                 params["fps"])
      if cuts is None:
        break
      label = f"PySceneDetect {name} (threshold {detector_threshold:g}) + avjax grouping"
      timing[label] = timing.get(label, 0.0) + time.perf_counter() - start
      if times is None:
        times, hists = _frame_histograms(path)
      shot_scene = scenes_lib.group_shots(scenes_lib.key_histograms(cuts, times, hists),
                                          threshold)
      _, snippet_scenes = scenes_lib.snippet_ids(cuts, shot_scene, entry["num_snippets"],
                                                 seconds)
      row = counts.setdefault(label, dict(shots=[], scenes=[]))
      row["shots"].append(match(cuts, true_shots, seconds))
      row["scenes"].append(match(snippet_scene_boundaries(snippet_scenes, seconds),
                                 true_scenes, seconds))
  if not counts:
    raise ValueError(f"{dataset_dir}: no title has both scene ids and ground truth in "
                     f"{synthetic_dir}/labels.json")
  return {name: {kind: _pooled(c) for kind, c in rows.items()}
          for name, rows in counts.items()}, timing


def run(f):
  if not f.synthetic or not f.dataset:
    raise ValueError("scenes needs --synthetic=DIR (a synthetic set with labels.json) and "
                     "--dataset=DIR (its ingest)")
  results, timing = measure(f.synthetic, f.dataset)
  manifest = records.load_manifest(f.dataset)
  titles = sum("snippet_scenes" in t for t in manifest["titles"])
  lines = [f"{titles} titles of `{f.synthetic}`, ingested into `{f.dataset}`; boundaries "
           "matched one to one within ±1 snippet (3.2 s), pooled over titles.", "",
           "| detector | shot precision | shot recall | scene precision | scene recall |",
           "|---|---|---|---|---|"]
  for name, r in results.items():
    s, c = r["shots"], r["scenes"]
    lines.append(f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} ({s['true']} true) | "
                 f"{c['precision']:.3f} | {c['recall']:.3f} ({c['true']} true) |")
  if timing:
    lines += ["", "PySceneDetect's time on these files: " + "; ".join(
        f"{name.split(' + ')[0]} {seconds:.1f} s" for name, seconds in timing.items()) + "."]
  else:
    lines += ["", "PySceneDetect is not installed (pip install scenedetect "
              "opencv-python-headless): only avjax's detector was measured."]
  return "\n".join(lines)
