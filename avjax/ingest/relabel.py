"""titles.csv edits for titles already ingested: their kind, show, genres and split follow.

A finished title keeps its records; only its entry file is rewritten (atomically) when its
metadata now says another kind, show or genres, and its split is derived again from them
(by show for episodes, discover.split_of), so a re-grouped show's episodes stay together
in one split. The driver rebuilds the manifest from the entry files afterwards.
"""

from absl import logging

from avjax import fileio
from avjax.ingest import discover
from avjax.ingest import title as title_lib

FIELDS = ("kind", "show", "genres", "split")


def relabel(dataset_dir, done, titles, val_fraction):
  """Updates the entries in `done` ({id: entry}) whose metadata in `titles` (discovered,
  with titles.csv applied) changed; returns [{"title_id", "changes": {field: [old, new]}}]."""
  updated = []
  for meta in titles:
    entry = done.get(meta["id"])
    if entry is None:
      continue
    want = dict(kind=meta["kind"], show=meta["show"], genres=list(meta.get("genres") or []),
                split=discover.split_of(meta, val_fraction))
    changes = {k: [entry.get(k), want[k]] for k in FIELDS if entry.get(k) != want[k]}
    if not changes:
      continue
    entry.update(want)
    fileio.write_json(title_lib.entry_path(dataset_dir, meta["id"]), entry)
    updated.append(dict(title_id=meta["id"], changes=changes))
  if updated:
    logging.warning("metadata changed for %d ingested title(s); their entries now follow it "
                    "(records kept):\n  %s", len(updated), "\n  ".join(
                        f"{u['title_id']}: " + ", ".join(f"{k} {a!r} -> {b!r}"
                                                         for k, (a, b) in u["changes"].items())
                        for u in updated))
  return updated
