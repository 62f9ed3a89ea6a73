"""Downstream datasets (UCF101, HMDB51, ESC-50): their standard on-disk layouts.

The datasets of the paper's downstream evaluation (Section 4.1, "Downstream Evaluation",
and Section 7.2): UCF101 and HMDB51 evaluate the video encoder f, ESC-50 the audio
encoder g (KINDS). UCF101 and HMDB51 have three standard train/test splits, ESC-50 five
folds (SPLITS); results are averaged over all of them.

This module parses the files each dataset ships with into classes, clips and splits
(`read_layout`). Missing or malformed split files and unknown classes are errors that name
the file and line. The data flow goes on in downstream_prepare (each clip decoded once
into TFRecord shards) and downstream_input (tf.data pipelines for fine-tuning).
"""

import csv
import dataclasses
import glob
import os
import re

from absl import logging

DATASETS = ("ucf101", "hmdb51", "esc50")
KINDS = {"ucf101": "video", "hmdb51": "video", "esc50": "audio"}
# Standard splits: three train/test splits for the video datasets, five folds for ESC-50.
SPLITS = {"ucf101": (1, 2, 3), "hmdb51": (1, 2, 3), "esc50": (1, 2, 3, 4, 5)}


class LayoutError(ValueError):
  """A dataset's files do not have the standard layout; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Clip:
  """One labelled clip of a dataset.

  Attributes:
    id: a stable name, the path under the dataset root without extension
      (e.g. "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01"; ESC-50: "1-100032-A-0").
    path: where the clip's file is (or would be, when it is missing).
    label: 0-based class index.
  """
  id: str
  path: str
  label: int


@dataclasses.dataclass
class Layout:
  """A dataset as its split files describe it.

  Attributes:
    dataset: "ucf101", "hmdb51" or "esc50".
    classes: class names; label i is classes[i].
    clips: every clip named by the split files whose file exists, sorted by id.
    splits: {split number: {"train": [clip ids], "test": [clip ids]}} over `clips`.
    missing: (clip id, path) named by a split file but not on disk.
    unlisted: clip files on disk that no split file names (not used).
  """
  dataset: str
  classes: list
  clips: list
  splits: dict
  missing: list = dataclasses.field(default_factory=list)
  unlisted: list = dataclasses.field(default_factory=list)

  @property
  def kind(self):
    return KINDS[self.dataset]


def _read_lines(path):
  """Non-empty stripped lines of a split file (CRLF tolerated) with 1-based line numbers."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: split file not found")
  with open(path, encoding="utf-8", errors="replace") as f:
    return [(i, line.strip()) for i, line in enumerate(f, 1) if line.strip()]


def _resolve(folder, name):
  """Path of `name` in `folder`, matching case-insensitively if the exact name is absent.

  UCF101's lists and files disagree in case for one class ("HandStandPushups" in file
  names, "HandstandPushups" in the folder name), depending on the copy.
  """
  path = os.path.join(folder, name)
  if os.path.exists(path):
    return path
  if os.path.isdir(folder):
    lower = name.lower()
    for entry in os.listdir(folder):
      if entry.lower() == lower:
        return os.path.join(folder, entry)
  return None


def _files_under(folder, extensions):
  out = []
  for ext in extensions:
    out.extend(glob.glob(os.path.join(folder, "**", f"*{ext}"), recursive=True))
  return sorted(out)


def _read_ucf101_classes(class_file):
  """Class names of classInd.txt ("<index> <class>", indices 1, 2, ... in order)."""
  classes = []
  for lineno, line in _read_lines(class_file):
    parts = line.split()
    if len(parts) != 2 or not parts[0].isdigit():
      raise LayoutError(f"{class_file}:{lineno}: expected '<index> <class>', got {line!r}")
    if int(parts[0]) != len(classes) + 1:
      raise LayoutError(f"{class_file}:{lineno}: class index {parts[0]}, expected "
                        f"{len(classes) + 1} (indices run 1, 2, ... in order)")
    classes.append(parts[1])
  if not classes:
    raise LayoutError(f"{class_file}: no classes")
  return classes


def _read_ucf101_list(path, with_label, classes, class_file, videos, entries, missing):
  """Clip ids of a train or test list; a label, where given, must match classInd.

  Adds each clip seen for the first time to `entries` (found) or `missing`.
  """
  index = {c.lower(): i for i, c in enumerate(classes)}
  ids = []
  for lineno, line in _read_lines(path):
    parts = line.split()
    if len(parts) not in (1, 2):
      raise LayoutError(f"{path}:{lineno}: expected '<class>/<file>.avi"
                        f"{' <label>' if with_label else ''}', got {line!r}")
    rel = parts[0].replace("\\", "/")
    cls, _, name = rel.partition("/")
    if not name or "/" in name:
      raise LayoutError(f"{path}:{lineno}: expected '<class>/<file>.avi', got {rel!r}")
    if cls.lower() not in index:
      raise LayoutError(f"{path}:{lineno}: unknown class {cls!r} (not in {class_file})")
    label = index[cls.lower()]
    if len(parts) == 2 and (not parts[1].isdigit() or int(parts[1]) != label + 1):
      raise LayoutError(f"{path}:{lineno}: label {parts[1]!r} does not match class {cls!r}"
                        f" (index {label + 1} in {class_file})")
    clip_id = f"{classes[label]}/{os.path.splitext(name)[0]}"
    if clip_id not in entries and clip_id not in missing:
      file = _resolve(_resolve(videos, classes[label]) or os.path.join(videos, cls), name)
      if file is None:
        missing[clip_id] = os.path.join(videos, rel)
      else:
        entries[clip_id] = Clip(clip_id, file, label)
    ids.append(clip_id)
  return ids


def read_ucf101(root):
  """UCF101: ROOT/UCF-101/<class>/*.avi and ROOT/ucfTrainTestlist/*.txt.

  ucfTrainTestlist holds classInd.txt ("<index> <class>", 1-based) and, for each split s,
  trainlist0s.txt ("<class>/<file>.avi <index>") and testlist0s.txt ("<class>/<file>.avi").
  """
  videos = os.path.join(root, "UCF-101")
  lists = os.path.join(root, "ucfTrainTestlist")
  if not os.path.isdir(videos):
    raise FileNotFoundError(f"{videos}: UCF101 video folder not found (expected "
                            "ROOT/UCF-101/<class>/*.avi)")
  class_file = os.path.join(lists, "classInd.txt")
  classes = _read_ucf101_classes(class_file)
  entries, missing, splits = {}, {}, {}
  for s in SPLITS["ucf101"]:
    train, test = (_read_ucf101_list(os.path.join(lists, f"{name}{s:02d}.txt"),
                                      name == "trainlist", classes, class_file, videos,
                                      entries, missing)
                   for name in ("trainlist", "testlist"))
    overlap = set(train) & set(test)
    if overlap:
      raise LayoutError(f"{lists}: split {s} lists {len(overlap)} clips in both "
                        f"trainlist{s:02d}.txt and testlist{s:02d}.txt, e.g. {min(overlap)}")
    splits[s] = {"train": train, "test": test}
  return _finish("ucf101", classes, entries, missing, splits,
                 _files_under(videos, (".avi", ".AVI")), videos)


_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[0-9]+)\.txt$")


def read_hmdb51(root):
  """HMDB51: ROOT/<class>/*.avi and ROOT/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt.

  In a split file each line is '<file>.avi <id>' with id 1 = train, 2 = test, 0 = unused.
  The classes are the split files' class names, sorted (label i = i-th name).
  """
  split_dir = os.path.join(root, "testTrainMulti_7030_splits")
  if not os.path.isdir(split_dir):
    raise FileNotFoundError(f"{split_dir}: HMDB51 split folder not found (expected "
                            "ROOT/testTrainMulti_7030_splits/<class>_test_split1.txt, ...)")
  found = {}
  for name in os.listdir(split_dir):
    m = _HMDB_SPLIT.match(name)
    if m:
      found.setdefault(m["cls"], set()).add(int(m["split"]))
  if not found:
    raise FileNotFoundError(f"{split_dir}: no <class>_test_split<n>.txt files")
  classes = sorted(found)
  for cls in classes:
    for s in SPLITS["hmdb51"]:
      if s not in found[cls]:
        raise FileNotFoundError(f"{os.path.join(split_dir, f'{cls}_test_split{s}.txt')}: "
                                f"split file not found (class {cls!r} has splits "
                                f"{sorted(found[cls])})")

  entries, missing = {}, {}
  splits = {s: {"train": [], "test": []} for s in SPLITS["hmdb51"]}
  for label, cls in enumerate(classes):
    class_dir = _resolve(root, cls) or os.path.join(root, cls)
    for s in SPLITS["hmdb51"]:
      path = os.path.join(split_dir, f"{cls}_test_split{s}.txt")
      for lineno, line in _read_lines(path):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
          raise LayoutError(f"{path}:{lineno}: expected '<file>.avi <0|1|2>', got {line!r}")
        name, which = parts
        clip_id = f"{cls}/{os.path.splitext(name)[0]}"
        if clip_id not in entries and clip_id not in missing:
          file = _resolve(class_dir, name)
          if file is None:
            missing[clip_id] = os.path.join(class_dir, name)
          else:
            entries[clip_id] = Clip(clip_id, file, label)
        if which == "1":
          splits[s]["train"].append(clip_id)
        elif which == "2":
          splits[s]["test"].append(clip_id)
  on_disk = [p for cls in classes
             for p in _files_under(_resolve(root, cls) or os.path.join(root, cls), (".avi",))]
  return _finish("hmdb51", classes, entries, missing, splits, on_disk, root)


_ESC50_COLUMNS = ("filename", "fold", "target", "category")


def read_esc50(root):
  """ESC-50: ROOT/audio/*.wav and ROOT/meta/esc50.csv (filename, fold, target, category, ...).

  Split f (1-5) tests on fold f and trains on the other four (the standard 5-fold protocol).
  """
  audio_dir = os.path.join(root, "audio")
  meta = os.path.join(root, "meta", "esc50.csv")
  if not os.path.isfile(meta):
    raise FileNotFoundError(f"{meta}: ESC-50 metadata not found (expected ROOT/meta/esc50.csv)")
  if not os.path.isdir(audio_dir):
    raise FileNotFoundError(f"{audio_dir}: ESC-50 audio folder not found (expected "
                            "ROOT/audio/*.wav)")
  with open(meta, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    absent = [c for c in _ESC50_COLUMNS if c not in (reader.fieldnames or ())]
    if absent:
      raise LayoutError(f"{meta}: missing column(s) {', '.join(absent)}; header is "
                        f"{reader.fieldnames}")
    rows = list(reader)
  names, entries, missing, folds = {}, {}, {}, {}
  for lineno, row in enumerate(rows, 2):
    try:
      fold, target = int(row["fold"]), int(row["target"])
    except (TypeError, ValueError):
      raise LayoutError(f"{meta}:{lineno}: fold and target must be integers, got "
                        f"fold={row['fold']!r} target={row['target']!r}") from None
    if fold not in SPLITS["esc50"]:
      raise LayoutError(f"{meta}:{lineno}: fold {fold} not in 1-5")
    if target < 0:
      raise LayoutError(f"{meta}:{lineno}: negative target {target}")
    category = row["category"]
    if names.setdefault(target, category) != category:
      raise LayoutError(f"{meta}:{lineno}: target {target} is {category!r} here but "
                        f"{names[target]!r} earlier")
    clip_id = os.path.splitext(row["filename"])[0]
    file = _resolve(audio_dir, row["filename"])
    if file is None:
      missing[clip_id] = os.path.join(audio_dir, row["filename"])
    else:
      entries[clip_id] = Clip(clip_id, file, target)
    folds[clip_id] = fold
  if sorted(names) != list(range(len(names))):
    raise LayoutError(f"{meta}: targets must be 0..{len(names) - 1} without gaps, got "
                      f"{sorted(names)}")
  classes = [names[i] for i in range(len(names))]
  splits = {f: {"train": [c for c, g in folds.items() if g != f],
                "test": [c for c, g in folds.items() if g == f]} for f in SPLITS["esc50"]}
  return _finish("esc50", classes, entries, missing, splits,
                 _files_under(audio_dir, (".wav", ".WAV")), audio_dir)


def _finish(dataset, classes, entries, missing, splits, on_disk, base):
  listed = {os.path.normcase(os.path.abspath(c.path)) for c in entries.values()}
  unlisted = [os.path.relpath(p, base) for p in on_disk
              if os.path.normcase(os.path.abspath(p)) not in listed]
  present = set(entries)
  splits = {s: {k: [c for c in v if c in present] for k, v in d.items()}
            for s, d in splits.items()}
  return Layout(dataset=dataset, classes=list(classes),
                clips=[entries[k] for k in sorted(entries)], splits=splits,
                missing=sorted(missing.items()), unlisted=unlisted)


def read_layout(dataset, root):
  """Parses `root` in the standard layout of `dataset` (see DATASETS)."""
  readers = {"ucf101": read_ucf101, "hmdb51": read_hmdb51, "esc50": read_esc50}
  if dataset not in readers:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
  if not os.path.isdir(root):
    raise FileNotFoundError(f"{root}: dataset root not found")
  layout = readers[dataset](os.path.abspath(root))
  if layout.missing:
    logging.warning("%s: %d clip(s) named by the split files are not on disk, e.g. %s",
                    dataset, len(layout.missing), layout.missing[0][1])
  return layout
