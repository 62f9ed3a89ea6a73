"""Finding titles: video files under a folder or in a list, their ids, kinds and shows.

A `titles.csv` (title_id, kind, show_id, genres, path) overrides what the paths say: a
row that names a file's path is used as it is, and no id is derived from that path at
all. Any file or folder name yields an id (records.safe_title_id: non-Latin names keep
their letters). The held-out split is a hash of the title id, or of the show for TV
episodes (paper Section 4.2: all or none of a show's episodes are held out).

Folders are searched recursively, following symbolic links to folders; a folder reached
a second time (a link loop, or two links to one folder) is searched only once.
"""

import csv
import hashlib
import io
import os

from absl import logging

from avjax import storage
from avjax.data import records

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts",
                    ".m2ts", ".mts", ".flv", ".wmv", ".ogv", ".3gp")
METADATA = "titles.csv"
# Top-level folders that hold movies, or that hold one folder per show.
MOVIE_FOLDERS = ("movies", "movie", "films", "film")
SHOW_FOLDERS = ("shows", "tv", "series", "tv shows", "tv_shows")


def split_of(title_meta, val_fraction):
  """'val' or 'train' by a hash of the title id, or of the show for episodes (paper Sec. 4.2)."""
  key = title_meta["show"] if title_meta["kind"] == "episode" else title_meta["id"]
  u = int.from_bytes(hashlib.sha256(f"avjax-split:{key}".encode()).digest()[:8], "big") / 2**64
  return "val" if u < val_fraction else "train"


def _derive_meta(rel_parts):
  """Title id, kind and show from a path relative to the input root.

  Root-level files and files under a top-level `movies/` folder are movies; otherwise
  the first folder is the show (under an optional top-level `shows/` folder), and the
  folders in between (e.g. seasons) become part of the id.
  """
  stem = os.path.splitext(rel_parts[-1])[0]
  folders = list(rel_parts[:-1])
  if folders and folders[0].lower() in SHOW_FOLDERS and len(folders) > 1:
    folders = folders[1:]
  if not folders or folders[0].lower() in MOVIE_FOLDERS:
    return dict(id=records.safe_title_id(stem), kind="movie", show=None, genres=[])
  show = records.ascii_title_id(folders[0])
  if show:  # as ever: ids valid before must not change
    tid = records.safe_title_id("_".join(folders + [stem]))
  else:  # e.g. 'Друзья': the show's letters stay in the show and in the episode ids
    show = records.unicode_title_id(folders[0])
    tid = records.unicode_title_id("_".join(folders + [stem]))
  return dict(id=tid, kind="episode", show=show, genres=[])


def _walk(top):
  """Video files under `top` in sorted order, following links to folders, each folder once."""
  paths, seen = [], set()
  for folder, dirs, files in os.walk(top, followlinks=True):
    st = os.stat(folder)
    if (st.st_dev, st.st_ino) in seen:
      logging.warning("%s: already searched (a link loop, or a second link to a folder); "
                      "not searched again", folder)
      dirs[:] = []
      continue
    seen.add((st.st_dev, st.st_ino))
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    paths += [os.path.join(folder, f) for f in sorted(files)
              if not f.startswith(".") and f.lower().endswith(VIDEO_EXTENSIONS)]
  return paths


def read_metadata(path):
  """titles.csv rows: title_id, and optional kind, show_id, genres ('|'-separated), path."""
  rows = []
  with storage.open(path, "rb") as f:
    reader = csv.DictReader(io.StringIO(f.read().decode("utf-8"), newline=""))
    if not reader.fieldnames or "title_id" not in reader.fieldnames:
      raise ValueError(f"{path}: needs a header with a title_id column "
                       "(and optionally kind, show_id, genres, path)")
    for line, row in enumerate(reader, start=2):
      tid = (row.get("title_id") or "").strip()
      if not records.is_title_id(tid):
        raise ValueError(f"{path} line {line}: title_id {tid!r} must be non-empty and use only "
                         "letters (of any script), digits, '.', '_' and '-'")
      show = (row.get("show_id") or "").strip() or None
      kind = (row.get("kind") or "").strip().lower() or ("episode" if show else "movie")
      if kind not in ("movie", "episode"):
        raise ValueError(f"{path} line {line}: kind {kind!r}, expected 'movie' or 'episode'")
      if kind == "episode" and not show:
        raise ValueError(f"{path} line {line}: episode {tid} has no show_id")
      genres = [g.strip() for g in (row.get("genres") or "").replace(";", "|").split("|")
                if g.strip()]
      rel = (row.get("path") or "").strip()
      rows.append(dict(id=tid, kind=kind, show=show if kind == "episode" else None,
                       genres=genres,
                       path=storage.normpath(storage.join(storage.dirname(path), rel))
                       if rel else None))
  return rows


def _video_files(root):
  """Video files under `root` (local folder or bucket prefix), hidden ones left out."""
  if storage.is_local(root):
    return _walk(root)  # follows links to folders, with loop protection
  paths = []
  for folder, dirs, files in storage.walk(root):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    rel = storage.relpath(folder, root)
    if any(part.startswith(".") for part in rel.replace(os.sep, "/").split("/") if part != "."):
      continue  # an object store lists every folder; prune as os.walk would
    paths += [storage.join(folder, f) for f in sorted(files)
              if not f.startswith(".") and f.lower().endswith(VIDEO_EXTENSIONS)]
  return paths


def discover(input_path, metadata=None):
  """Titles to ingest: a list of dicts with path, id, kind, show and genres, sorted by id.

  `input_path` is a folder (searched recursively for video files; a `titles.csv` at
  its top is used when `metadata` is not given), one video file, or a text file
  listing video paths (one per line, relative to the list's folder; '#' comments).
  """
  if storage.isdir(input_path):
    root, paths = input_path, _video_files(input_path)
    if metadata is None and storage.exists(storage.join(root, METADATA)):
      metadata = storage.join(root, METADATA)
  elif not storage.exists(input_path):
    raise FileNotFoundError(f"--input {input_path!r} does not exist")
  elif input_path.lower().endswith(VIDEO_EXTENSIONS):
    root, paths = storage.dirname(input_path), [input_path]
  else:
    root = storage.dirname(input_path)
    with storage.open(input_path, "rb") as f:
      lines = f.read().decode("utf-8").splitlines()
    paths = [storage.join(root, l.strip()) for l in lines if l.strip() and not l.startswith("#")]
  rows = read_metadata(metadata) if metadata else []
  by_path = {storage.abspath(r["path"]): r for r in rows if r["path"]}
  by_id = {r["id"]: r for r in rows if not r["path"]}
  titles, seen = [], {}
  for path in paths:
    row = by_path.get(storage.abspath(path))
    if row is None:  # derived only when no row names this file
      rel = storage.relpath(path, root or ".")
      sep = os.sep if storage.is_local(path) else "/"
      parts = [storage.basename(path)] if rel.startswith("..") else rel.split(sep)
      meta = _derive_meta(parts)
      row = by_id.get(meta["id"])
    if row:
      meta = {k: row[k] for k in ("id", "kind", "show", "genres")}
    if meta["id"] in seen:
      raise ValueError(f"{path} and {seen[meta['id']]} both make title id {meta['id']!r}; "
                       "give them distinct ids in a titles.csv (--metadata)")
    seen[meta["id"]] = path
    titles.append(dict(meta, path=path))
  return sorted(titles, key=lambda t: t["id"])
