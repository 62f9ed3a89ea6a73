r"""Adds per-snippet shot and scene ids to a dataset ingested without them (format version 1).

  python -m avjax.ingest.add_scenes --dataset=data/movie [--scene_threshold=0.25] [--redo]

The records are only read, never rewritten (their bytes stay the same): each title's
stored frames are decoded from its records, their colour histograms grouped by the shots
the manifest already lists (avjax/ingest/scenes.py), and the ids written into the title's
entry file and the manifest, each atomically, under the dataset's ingest lock. The
manifest then says format_version 2. Titles that have ids keep them unless --redo. A
rerun after an interruption goes on where it stopped (entry files are written per title).
The ids come from the stored frames (the stored rate and size) where ingest uses the
source's frames, so they can differ from an ingest's at a few shot edges.
"""

import contextlib

import av
import numpy as np
from absl import app
from absl import flags
from absl import logging

from avjax import console
from avjax import storage
from avjax.data import example
from avjax.data import records
from avjax.ingest import lock as lock_lib
from avjax.ingest import params as params_lib
from avjax.ingest import scenes
from avjax.ingest import shots
from avjax.ingest import title as title_lib


def stored_histograms(reader, entry, fps):
  """(times, histograms) of a title's stored frames, decoded from its records."""
  decoder = av.CodecContext.create("mjpeg", "r")
  times, hists = [], []
  for m in range(entry["num_snippets"]):
    snippet = example.decode_snippet_numpy(reader.read(entry["id"], m))
    for i, jpeg in enumerate(snippet["frames"]):
      decoded = decoder.decode(av.Packet(jpeg))
      if not decoded:
        raise ValueError(f"title {entry['id']!r} snippet {m}: frame {i} is not a JPEG "
                         "that decodes")
      times.append(snippet["start_time"] + i / fps)
      hists.append(shots.frame_histogram(decoded[0]))
  return np.asarray(times), np.stack(hists)


def add_scenes(dataset_dir, *, threshold=None, redo=False, progress=True):
  """Adds scene ids to every title of the dataset that lacks them; returns the manifest."""
  guard = (lock_lib.IngestLock(dataset_dir, purpose="add_scenes")
           if storage.is_local(dataset_dir) else contextlib.nullcontext())
  with guard:
    manifest = records.load_manifest(dataset_dir)
    params = dict(manifest["params"])
    if threshold is None:
      threshold = params.get("scene_threshold", params_lib.DEFAULT_PARAMS["scene_threshold"])
    todo = [t for t in manifest["titles"] if redo or "snippet_scenes" not in t]
    bar = console.progress(total=len(todo), unit="title", desc="scene ids",
                           disable=not progress)
    with records.SnippetReader(dataset_dir, manifest) as reader:
      for entry in todo:
        times, hists = stored_histograms(reader, entry, params["fps"])
        entry["snippet_shots"], entry["snippet_scenes"] = scenes.structure(
            entry.get("shots", []), times, hists, entry["num_snippets"],
            records.snippet_seconds(params), threshold)
        storage.write_json(title_lib.entry_path(dataset_dir, entry["id"]), entry)
        bar.update(1)
    bar.close()
    manifest.update(format_version=records.FORMAT_VERSION,
                    params=dict(params, scene_threshold=threshold))
    records.write_manifest(dataset_dir, manifest)
  logging.info("%s: scene ids added to %d of %d titles", dataset_dir, len(todo),
               len(manifest["titles"]))
  return manifest


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  f = flags.FLAGS
  console.setup()
  manifest = add_scenes(f.dataset, threshold=f.scene_threshold, redo=f.redo,
                        progress=f.progress)
  counts = [len(set(t["snippet_scenes"])) for t in manifest["titles"]]
  print(f"{f.dataset}: {len(counts)} titles with scene ids, "
        f"{min(counts, default=0)}-{max(counts, default=0)} scenes per title")


if __name__ == "__main__":
  flags.DEFINE_string("dataset", None, "Dataset dir written by python -m avjax.ingest.",
                      required=True)
  flags.DEFINE_float("scene_threshold", None, "Key-histogram distance at or below which a "
                     "shot joins the scene before it (default: the manifest's, else "
                     f"{params_lib.DEFAULT_PARAMS['scene_threshold']}).")
  flags.DEFINE_bool("redo", False, "Recompute the ids of titles that have them.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")
  app.run(main)
