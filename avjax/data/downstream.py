"""Downstream datasets (UCF101, HMDB51, ESC-50): on-disk layouts, prepare, tf.data inputs.

Evaluation follows paper Section 4.1 ("Downstream Evaluation") and Section 7.2:
  video (UCF101, HMDB51, encoder f): train on 32-frame clips at 10 fps from a random
    position, shorter side jittered in [181, 226], random 158x158 crop, horizontal flip,
    color jitter; test on 10 uniformly spaced clips x 3 crops (left, center, right).
  audio (ESC-50, encoder g): train on random 3-s clips with time and frequency masking of
    up to 50% of each axis (no crop, no scale jitter); test on 10 uniformly spaced clips.

Three parts, in data-flow order:
  1. Layouts: the files each dataset ships with, parsed into classes, clips and splits
     (`read_layout`). Missing or malformed split files and unknown classes are errors that
     name the file and line.
  2. Prepare (`prepare`, run by `python -m avjax.prepare_downstream`): every clip decoded
     once with PyAV into TFRecord shards in the snippet record format of records.py (one
     record per whole clip: title_id = clip id, all frames at 10 fps as JPEG, audio as
     48 kHz mono int16), plus `manifest.json` (classes, clips, splits) and
     `prepare_report.json` (clips listed but missing, unreadable, unlisted).
  3. Inputs (`train_dataset`, `test_batches`): tf.data pipelines over a prepared directory
     or, for UCF101, the TFDS `ucf101` builder (`source="tfds"`), yielding host-local numpy
     batches for the fine-tuning trainer.

Layout of a prepared directory:
  OUT/manifest.json                  format, params, classes, clips, splits
  OUT/prepare_report.json            what was skipped and why
  OUT/titles/shard-NNNNN.tfrecord    one tf.train.Example per clip (records.encode_snippet)
  OUT/titles/shard-NNNNN.index.npy   record offsets (records.TitleWriter)
  OUT/shards/shard-NNNNN.json        the shard's clips; present exactly when it is complete
"""

import concurrent.futures
import csv
import dataclasses
import glob
import io
import multiprocessing
import os
import re
import time

import av
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from avjax import fileio
from avjax.data import audio as audio_lib
from avjax.data import pipeline
from avjax.data import records

DATASETS = ("ucf101", "hmdb51", "esc50")
KINDS = {"ucf101": "video", "hmdb51": "video", "esc50": "audio"}
# Standard splits: three train/test splits for the video datasets, five folds for ESC-50.
SPLITS = {"ucf101": (1, 2, 3), "hmdb51": (1, 2, 3), "esc50": (1, 2, 3, 4, 5)}

FORMAT = "avjax-downstream"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REPORT = "prepare_report.json"
SHARDS_DIR = "shards"

DEFAULT_PARAMS = dict(
    fps=10.0,          # Section 4.1: clips at 10 fps.
    short_side=226,    # the top of the [181, 226] scale jitter; larger costs disk only.
    sample_rate=audio_lib.SAMPLE_RATE,
    jpeg_quality=90,
    clips_per_shard=64,
)


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


# ---------------------------------------------------------------------------
# 1. Layouts.


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
  index = {c.lower(): i for i, c in enumerate(classes)}

  entries = {}  # clip id -> Clip (or None when missing)
  missing = {}
  splits = {}

  def parse(path, with_label):
    """Clip ids of a train or test list; a label, where given, must match classInd."""
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
      if len(parts) == 2:
        if not parts[1].isdigit() or int(parts[1]) != label + 1:
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

  for s in SPLITS["ucf101"]:
    train = parse(os.path.join(lists, f"trainlist{s:02d}.txt"), True)
    test = parse(os.path.join(lists, f"testlist{s:02d}.txt"), False)
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
  names = {}
  entries, missing = {}, {}
  folds = {}
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


# ---------------------------------------------------------------------------
# 2. Prepare: decode each clip once into TFRecord shards.


class UnreadableClip(Exception):
  """A clip that cannot be decoded; prepare skips it and names it in the report."""


def _scaled_size(frame, stream, short_side):
  """(height, width) with the shorter side `short_side`, keeping the display aspect ratio."""
  width = frame.width * float(stream.sample_aspect_ratio or 1)
  scale = short_side / min(width, frame.height)
  return max(1, int(round(frame.height * scale))), max(1, int(round(width * scale)))


def _jpeg(rgb, quality):
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def decode_video(path, *, fps, short_side, jpeg_quality=90):
  """Frames of a video file at `fps`, shorter side `short_side`, as JPEG bytes.

  Timestamps decide which frame is shown at time k / fps (as in ingest): the last decoded
  frame whose presentation time is <= t0 + k / fps, t0 the first frame's time, so 25 or
  29.97 fps sources come out evenly at 10 fps. Frames are resized by FFmpeg's area filter.

  Returns:
    (list of JPEG bytes, duration in seconds).
  Raises:
    UnreadableClip: the file cannot be opened or has no decodable video frame.
  """
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise UnreadableClip(f"cannot open: {e}") from e
  out = []
  try:
    streams = [s for s in container.streams.video
               if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
      raise UnreadableClip("no video stream")
    stream = streams[0]
    stream.thread_type = "AUTO"
    period = 1.0 / float(stream.average_rate or stream.guessed_rate or 25)
    prev = None  # (sequence number, time, frame) of the latest decoded frame
    cached = (None, None)  # (sequence number, JPEG) of the latest encoded frame
    t0, k = None, 0

    def emit_until(t):
      """The latest frame fills every target time before t."""
      nonlocal cached, k
      seq, _, frame = prev
      while t0 + k / fps < t - 1e-6:
        if cached[0] != seq:  # a frame shown at several target times is encoded once
          h, w = _scaled_size(frame, stream, short_side)
          rgb = frame.reformat(width=w, height=h, format="rgb24",
                               interpolation="AREA").to_ndarray()
          cached = (seq, _jpeg(rgb, jpeg_quality))
        out.append(cached[1])
        k += 1

    try:
      for seq, frame in enumerate(container.decode(stream)):
        t = frame.time
        if t is None:  # no timestamp (some AVI): assume the nominal frame rate
          t = prev[1] + period if prev is not None else 0.0
        if prev is None:
          t0 = t
        elif t <= prev[1] + 1e-6:
          continue  # out of order or duplicate timestamp: the earlier frame stands
        else:
          emit_until(t)
        prev = (seq, t, frame)
      if prev is not None:
        emit_until(prev[1] + period)  # the last frame lasts one frame period
    except (av.error.FFmpegError, ValueError) as e:
      raise UnreadableClip(f"decoding failed after {len(out)} frames: {e}") from e
  finally:
    container.close()
  if not out:
    raise UnreadableClip("no decodable video frames")
  return out, len(out) / fps


def decode_audio(path, *, sample_rate):
  """The audio of a file as mono int16 PCM at `sample_rate` (FFmpeg's resampler).

  Raises:
    UnreadableClip: the file cannot be opened or has no decodable audio.
  """
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise UnreadableClip(f"cannot open: {e}") from e
  chunks = []
  try:
    if not container.streams.audio:
      raise UnreadableClip("no audio stream")
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    try:
      for frame in container.decode(stream):
        for out in resampler.resample(frame):
          chunks.append(out.to_ndarray().reshape(-1))
      for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, ValueError) as e:
      raise UnreadableClip(f"audio decoding failed: {e}") from e
  finally:
    container.close()
  pcm = np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)
  if not len(pcm):
    raise UnreadableClip("no decodable audio samples")
  return pcm


def _shard_name(i):
  return f"shard-{i:05d}"


def _prepare_shard(task):
  """Decodes one shard's clips and writes their records; returns the shard's summary.

  A module-level function of plain data, so a process pool (or a distributed runner) can
  map it. The records are renamed into place only when the whole shard is written
  (records.TitleWriter); the summary JSON is written last and marks the shard complete.
  """
  out_dir, name, kind, clips, params = (task["output"], task["name"], task["kind"],
                                        task["clips"], task["params"])
  done, skipped = [], []
  t0 = time.time()
  with records.TitleWriter(out_dir, name) as writer:
    for clip_id, path in clips:
      try:
        if kind == "video":
          frames, duration = decode_video(path, fps=params["fps"],
                                          short_side=params["short_side"],
                                          jpeg_quality=params["jpeg_quality"])
          pcm = np.zeros(0, np.int16)  # the video tasks use f only
        else:
          frames = []
          pcm = decode_audio(path, sample_rate=params["sample_rate"])
          duration = len(pcm) / params["sample_rate"]
      except UnreadableClip as e:
        logging.warning("%s: skipped (%s)", path, e)
        skipped.append(dict(id=clip_id, path=path, reason=str(e)))
        continue
      writer.write(records.encode_snippet(clip_id, 0, 0.0, frames, pcm))
      done.append(dict(id=clip_id, record=len(done), num_frames=len(frames),
                       num_samples=int(len(pcm)), duration=round(float(duration), 4)))
  rec, idx = records.record_paths(out_dir, name)
  summary = dict(name=name, records=rec, index=idx, planned=[c for c, _ in clips],
                 clips=done, skipped=skipped, params=params,
                 seconds=round(time.time() - t0, 2))
  fileio.write_json(os.path.join(out_dir, SHARDS_DIR, f"{name}.json"), summary)
  return summary


def _existing_shard(out_dir, name, planned, params):
  """The summary of a shard a previous run completed with the same plan, else None."""
  path = os.path.join(out_dir, SHARDS_DIR, f"{name}.json")
  if not os.path.exists(path):
    return None
  summary = fileio.read_json(path)
  if summary.get("planned") != planned or summary.get("params") != params:
    return None
  if not os.path.exists(os.path.join(out_dir, summary["records"])):
    return None
  return summary


def prepare(dataset, root, output, *, workers=1, fps=DEFAULT_PARAMS["fps"],
            short_side=DEFAULT_PARAMS["short_side"],
            sample_rate=DEFAULT_PARAMS["sample_rate"],
            jpeg_quality=DEFAULT_PARAMS["jpeg_quality"],
            clips_per_shard=DEFAULT_PARAMS["clips_per_shard"], progress=True):
  """Converts a dataset in its standard layout into a prepared directory (see module doc).

  Rerunning the same command skips complete shards (an interrupted run loses nothing
  finished). Clips that cannot be decoded are skipped, logged and listed with their
  reason in OUT/prepare_report.json; the manifest's splits leave them out.

  Returns:
    The report dict (counts and lists of missing, unreadable and unlisted clips).
  """
  layout = read_layout(dataset, root)
  if not layout.clips:
    raise FileNotFoundError(f"{root}: none of the {len(layout.missing)} clips named by the "
                            f"{dataset} split files exists, e.g. {layout.missing[0][1]}"
                            if layout.missing else f"{root}: the split files name no clips")
  output = os.path.abspath(output)
  os.makedirs(output, exist_ok=True)
  params = dict(fps=float(fps), short_side=int(short_side), sample_rate=int(sample_rate),
                jpeg_quality=int(jpeg_quality), clips_per_shard=int(clips_per_shard))
  # Clip j goes to shard j mod S: every shard mixes all classes, splits and folds, so a
  # shuffle that interleaves a few shards still yields well-mixed batches.
  num_shards = max(1, -(-len(layout.clips) // clips_per_shard))
  planned = [[(c.id, c.path) for c in layout.clips[i::num_shards]] for i in range(num_shards)]
  summaries, tasks = {}, []
  for i, clips in enumerate(planned):
    name = _shard_name(i)
    summary = _existing_shard(output, name, [c for c, _ in clips], params)
    if summary is not None:
      summaries[name] = summary
    else:
      tasks.append(dict(output=output, name=name, kind=layout.kind, clips=clips,
                        params=params))
  logging.info("%s: %d clips in %d shards (%d already prepared) -> %s", dataset,
               len(layout.clips), len(planned), len(summaries), output)

  t0 = time.time()
  bar = _progress(len(tasks), progress)
  if workers > 1 and len(tasks) > 1:
    # spawn: TensorFlow and FFmpeg threads do not survive fork().
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      for summary in pool.map(_prepare_shard, tasks):
        summaries[summary["name"]] = summary
        bar(summary)
  else:
    for task in tasks:
      summary = _prepare_shard(task)
      summaries[summary["name"]] = summary
      bar(summary)

  names = [_shard_name(i) for i in range(len(planned))]
  clips, unreadable = [], []
  labels = {c.id: c.label for c in layout.clips}
  for name in names:
    s = summaries[name]
    for c in s["clips"]:
      clips.append(dict(id=c["id"], label=labels[c["id"]], shard=name, record=c["record"],
                        num_frames=c["num_frames"], num_samples=c["num_samples"],
                        duration=c["duration"]))
    unreadable.extend(s["skipped"])
  present = {c["id"] for c in clips}
  splits = {str(s): {k: [c for c in ids if c in present] for k, ids in d.items()}
            for s, d in layout.splits.items()}
  manifest = dict(
      format=FORMAT, format_version=FORMAT_VERSION, dataset=dataset, kind=layout.kind,
      params=params, classes=layout.classes,
      shards=[dict(name=n, records=summaries[n]["records"], index=summaries[n]["index"],
                   num_clips=len(summaries[n]["clips"])) for n in names],
      clips=clips, splits=splits)
  report = dict(
      dataset=dataset, root=os.path.abspath(root),
      counts=dict(listed=len(layout.clips) + len(layout.missing), prepared=len(clips),
                  missing=len(layout.missing), unreadable=len(unreadable),
                  unlisted=len(layout.unlisted)),
      missing=[dict(id=i, path=p) for i, p in layout.missing],
      unreadable=unreadable, unlisted=layout.unlisted,
      seconds=round(time.time() - t0, 2))
  fileio.write_json(os.path.join(output, REPORT), report)
  records.write_manifest(output, manifest)
  logging.info("%s: %d clips prepared, %d missing, %d unreadable, %d unlisted; report %s",
               dataset, len(clips), len(layout.missing), len(unreadable),
               len(layout.unlisted), os.path.join(output, REPORT))
  return report


def _progress(total, enabled):
  """A callback logging shards done, clips and ETA (tqdm when it is installed)."""
  state = dict(done=0, clips=0, t0=time.time())
  bar = None
  if enabled and total:
    try:
      import tqdm  # pylint: disable=g-import-not-at-top
      bar = tqdm.tqdm(total=total, unit="shard", dynamic_ncols=True)
    except ImportError:
      bar = None

  def update(summary):
    state["done"] += 1
    state["clips"] += len(summary["clips"])
    if bar is not None:
      bar.update(1)
      bar.set_postfix(clips=state["clips"], skipped=len(summary["skipped"]))
      if state["done"] == total:
        bar.close()
    else:
      rate = state["done"] / max(time.time() - state["t0"], 1e-9)
      logging.info("shard %d/%d, %d clips, ETA %.0f s", state["done"], total, state["clips"],
                   (total - state["done"]) / max(rate, 1e-9))
  return update


def load_manifest(data_dir):
  """Reads and checks OUT/manifest.json of a prepared directory."""
  path = os.path.join(data_dir, MANIFEST)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no manifest; prepare the dataset first "
                            "(python -m avjax.prepare_downstream --dataset=... --root=... "
                            f"--output={data_dir})")
  manifest = fileio.read_json(path)
  if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"{path}: format {manifest.get('format')!r} version "
                     f"{manifest.get('format_version')!r}; expected {FORMAT!r} version "
                     f"{FORMAT_VERSION}")
  for key in ("dataset", "kind", "params", "classes", "shards", "clips", "splits"):
    if key not in manifest:
      raise ValueError(f"{path}: missing key {key!r}")
  return manifest


# ---------------------------------------------------------------------------
# 3. Inputs.


def default_config(dataset):
  """Input config of `dataset` with the paper's protocol (Sections 4.1, 7.2)."""
  if dataset not in DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
  c = ml_collections.ConfigDict()
  c.dataset = dataset
  c.kind = KINDS[dataset]
  c.source = "records"      # "records": a prepared directory; "tfds": the TFDS builder
  c.data_dir = ""           # the prepared directory, or the TFDS data_dir
  c.tfds_config = ""        # TFDS builder config; "" = f"ucf101_{split}"
  c.seed = 0
  # Video: 32 frames at 10 fps, shorter side jittered in [181, 226], random 158 crop,
  # flip, color jitter (Section 4.1).
  c.num_frames = 32
  c.fps = 10.0
  c.scale_min, c.scale_max = 181, 226
  c.crop_size = 158
  c.flip = True
  c.color_jitter = 0.4      # sigma of pipeline.color_jitter (brightness, contrast, saturation)
  # Test: 10 uniformly spaced clips x 3 crops (left, center, right) = 30 views. The
  # shorter side is resized to test_short_side (the low end of the training jitter).
  c.test_clips = 10
  c.test_crops = 3
  c.test_short_side = 181
  # Video normalization, (x - mean) / std on [0, 1] values: the pretraining pipeline's.
  c.video_mean = pipeline.VIDEO_MEAN
  c.video_std = pipeline.VIDEO_STD
  # Audio: random 3-s clips, log-mel (avjax.data.audio), time and frequency masks of up
  # to 50% of each axis, no crop or scale jitter (Section 4.1); test: 10 clips.
  c.clip_seconds = 3.0
  c.sample_rate = audio_lib.SAMPLE_RATE
  c.audio_mask_fraction = 0.5
  # I/O.
  c.shuffle_buffer = 512
  c.prefetch = 2
  c.num_parallel = -1  # -1: tf.data.AUTOTUNE
  c.dtype = "float32"        # of the model input arrays; "bfloat16" halves host->device
  return c


def _check_config(c):
  if c.kind == "video":
    if not 0 < c.crop_size <= min(c.scale_min, c.test_short_side):
      raise ValueError(f"data.crop_size {c.crop_size} must be <= data.scale_min "
                       f"{c.scale_min} and data.test_short_side {c.test_short_side}")
    if c.scale_min > c.scale_max:
      raise ValueError(f"data.scale_min {c.scale_min} > data.scale_max {c.scale_max}")
    if c.test_crops not in (1, 3):
      raise ValueError(f"data.test_crops must be 1 (center) or 3 (left, center, right), "
                       f"got {c.test_crops}")
  if c.source not in ("records", "tfds"):
    raise ValueError(f"data.source {c.source!r}: expected 'records' or 'tfds'")
  if c.source == "tfds" and c.dataset != "ucf101":
    raise ValueError(f"data.source='tfds' exists for ucf101 only, not {c.dataset}")


def views_per_clip(c):
  """Test views per clip: 30 for video (10 clips x 3 crops), 10 for audio."""
  return c.test_clips * (c.test_crops if c.kind == "video" else 1)


# --- Video transforms (on decoded uint8 frames; float pixel values 0..255 out).


def _frame_indices(starts, num_frames, step, length):
  """[..., num_frames] int32 indices of clips starting at `starts` (in source frames).

  The k-th frame of a clip is source frame floor(start + k * step), step = source fps /
  target fps; clips longer than the video wrap around (loop), as short videos must.
  """
  k = tf.range(num_frames, dtype=tf.float32)
  idx = tf.floor(tf.expand_dims(starts, -1) + k * step)
  return tf.math.floormod(tf.cast(idx, tf.int32), length)


def _box(y0, x0, crop, scale_y, scale_x, height, width):
  """Normalized crop_and_resize box equal to "resize by (scale_y, scale_x), crop at (y0, x0)".

  With half-pixel centers, output pixel j of the crop samples source coordinate
  (x0 + j + 0.5) / scale - 0.5; crop_and_resize samples box endpoints exactly, so the box
  spans the first and last of those (clamped to the image).
  """
  def span(o, s, n):
    lo = (tf.cast(o, tf.float32) + 0.5) / s - 0.5
    hi = (tf.cast(o, tf.float32) + crop - 0.5) / s - 0.5
    denom = tf.maximum(tf.cast(n, tf.float32) - 1.0, 1.0)
    return (tf.clip_by_value(lo, 0.0, denom) / denom, tf.clip_by_value(hi, 0.0, denom) / denom)
  y1, y2 = span(y0, scale_y, height)
  x1, x2 = span(x0, scale_x, width)
  return tf.stack([y1, x1, y2, x2])


def _resized_shape(height, width, short_side):
  """(h, w, scale_y, scale_x) after resizing the shorter side to `short_side` (float ok)."""
  h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  scale = tf.cast(short_side, tf.float32) / tf.minimum(h, w)
  rh, rw = tf.round(h * scale), tf.round(w * scale)
  return rh, rw, rh / h, rw / w


def video_train_view(frames, step, seed, c):
  """One training clip (Section 4.1): [num_frames, crop, crop, 3] float in [0, 1].

  Args:
    frames: [T] encoded frames (JPEG/PNG strings) or [T, H, W, 3] uint8.
    step: source frames per output frame (source fps / c.fps).
    seed: [2] stateless seed.
    c: the data config.
  """
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
  length = tf.shape(frames)[0]
  step = tf.cast(step, tf.float32)
  latest = tf.maximum(tf.cast(length, tf.float32) - (c.num_frames - 1) * step, 1.0)
  start = tf.random.stateless_uniform([], seeds[0], 0.0, latest)
  images = _decode(tf.gather(frames, _frame_indices(start, c.num_frames, step, length)))
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  # Scale jitter of the shorter side, then a random crop: one resample (crop_and_resize).
  short = tf.random.stateless_uniform([], seeds[1], c.scale_min, c.scale_max + 1, tf.int32)
  rh, rw, sy, sx = _resized_shape(height, width, short)
  y0 = tf.floor(tf.random.stateless_uniform([], seeds[2], 0.0, 1.0) * (rh - c.crop_size + 1))
  x0 = tf.floor(tf.random.stateless_uniform([], seeds[3], 0.0, 1.0) * (rw - c.crop_size + 1))
  box = _box(y0, x0, c.crop_size, sy, sx, height, width)
  n = tf.shape(images)[0]
  video = tf.image.crop_and_resize(tf.cast(images, tf.float32), tf.tile(box[None], [n, 1]),
                                   tf.range(n), [c.crop_size, c.crop_size])
  if c.flip:
    flip = tf.random.stateless_uniform([], seeds[4]) < 0.5
    video = tf.cond(flip, lambda: tf.reverse(video, [2]), lambda: video)
  video = tf.clip_by_value(video / 255.0, 0.0, 1.0)
  if c.color_jitter:
    video = pipeline.color_jitter(video, c.color_jitter, seeds[5])
  return video


def video_test_views(frames, step, c):
  """The test views of a clip: [test_clips * test_crops, num_frames, crop, crop, 3] in [0, 1].

  Clip starts are uniformly spaced from the first to the last position where a whole
  clip fits; each clip is cropped left, center and right along the longer side (top,
  center, bottom for portrait video), centered along the shorter, after resizing the
  shorter side to test_short_side. View v is clip v // test_crops, crop v % test_crops.
  """
  length = tf.shape(frames)[0]
  step = tf.cast(step, tf.float32)
  last = tf.maximum(tf.cast(length, tf.float32) - (c.num_frames - 1) * step - 1.0, 0.0)
  starts = tf.linspace(0.0, last, c.test_clips)
  idx = _frame_indices(starts, c.num_frames, step, length)  # [clips, num_frames]
  images = _decode(frames)  # every frame once; the views share them
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  rh, rw, sy, sx = _resized_shape(height, width, c.test_short_side)
  crop = float(c.crop_size)
  center_y, center_x = tf.floor((rh - crop) / 2), tf.floor((rw - crop) / 2)
  if c.test_crops == 1:
    offsets = [(center_y, center_x)]
  else:
    # Left, center, right along the longer side (top, center, bottom if portrait).
    landscape = rw >= rh
    offsets = [(tf.where(landscape, center_y, y), tf.where(landscape, x, center_x))
               for y, x in ((0.0, 0.0), (center_y, center_x), (rh - crop, rw - crop))]
  boxes = tf.stack([_box(y, x, c.crop_size, sy, sx, height, width) for y, x in offsets])
  n, k = tf.shape(images)[0], len(offsets)
  crops = tf.image.crop_and_resize(
      tf.cast(images, tf.float32), tf.repeat(boxes, n, axis=0), tf.tile(tf.range(n), [k]),
      [c.crop_size, c.crop_size])
  crops = tf.reshape(crops, [k, n, c.crop_size, c.crop_size, 3])
  views = tf.gather(crops, idx, axis=1)  # [crops, clips, num_frames, ...]
  views = tf.transpose(views, [1, 0, 2, 3, 4, 5])
  views = tf.reshape(views, [c.test_clips * k, c.num_frames, c.crop_size, c.crop_size, 3])
  return tf.clip_by_value(views / 255.0, 0.0, 1.0)


def _decode(frames):
  """[T] encoded frames -> [T, H, W, 3] uint8; uint8 frames pass through."""
  if frames.dtype == tf.uint8:
    return frames
  return tf.map_fn(lambda f: tf.io.decode_image(f, channels=3, expand_animations=False),
                   frames, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


def normalize_video(video, c):
  """[0, 1] -> (x - mean) / std per channel, as in pretraining (pipeline.VIDEO_MEAN/STD)."""
  mean = tf.constant(c.video_mean, tf.float32)
  return (video - mean) / tf.constant(c.video_std, tf.float32)


# --- Audio transforms.


def _window(c):
  return int(round(c.clip_seconds * c.sample_rate))


def time_frequency_mask(spec, max_fraction, seed):
  """Zeroes one band of up to `max_fraction` of the time axis and one of the mel axis.

  SpecAugment-style masks of Section 4.1 ("maximum possible length of the mask is 50% of
  the corresponding axis"): each band's width is uniform in 0 .. floor(max_fraction * L),
  its start uniform where it fits. 0 is the mean level after the fixed normalization.
  """
  if not max_fraction:
    return spec
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
  shape = tf.shape(spec)
  keep = tf.ones_like(spec, tf.bool)
  for axis, (s_width, s_start) in ((0, (seeds[0], seeds[1])), (1, (seeds[2], seeds[3]))):
    length = shape[axis]
    widest = tf.cast(tf.floor(max_fraction * tf.cast(length, tf.float32)), tf.int32)
    width = tf.random.stateless_uniform([], s_width, 0, widest + 1, tf.int32)
    start = tf.random.stateless_uniform([], s_start, 0, length - width + 1, tf.int32)
    pos = tf.range(length)
    band = (pos >= start) & (pos < start + width)
    band = band[:, None, None] if axis == 0 else band[None, :, None]
    keep &= ~band
  return tf.where(keep, spec, tf.zeros_like(spec))


def _fit(pcm, size):
  """Zero-pads a clip shorter than `size` samples at its end."""
  return tf.pad(pcm, [[0, tf.maximum(size - tf.shape(pcm)[0], 0)]])


def audio_train_view(pcm, seed, c):
  """A random 3-s clip as a masked log-mel spectrogram [mel_bins, frames, 1]."""
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
  size = _window(c)
  pcm = _fit(pcm, size)
  start = tf.random.stateless_uniform([], seeds[0], 0, tf.shape(pcm)[0] - size + 1, tf.int32)
  spec = audio_lib.log_mel_spectrogram(pcm[start:start + size], sample_rate=c.sample_rate)
  return time_frequency_mask(spec, c.audio_mask_fraction, seeds[1])


def audio_test_views(pcm, c):
  """10 uniformly spaced 3-s clips as log-mel spectrograms [test_clips, mel_bins, frames, 1]."""
  size = _window(c)
  pcm = _fit(pcm, size)
  last = tf.cast(tf.shape(pcm)[0] - size, tf.float32)
  starts = tf.cast(tf.round(tf.linspace(0.0, last, c.test_clips)), tf.int32)
  clips = tf.gather(pcm, starts[:, None] + tf.range(size)[None, :])
  return audio_lib.log_mel_spectrogram(clips, sample_rate=c.sample_rate)


# --- Sources: a prepared directory or the TFDS builder.


def _split_key(split, available, where):
  key = str(split)
  if key not in available:
    raise ValueError(f"{where}: no split {split}; available: {', '.join(sorted(available))}")
  return key


def _records_info(c, split):
  manifest = load_manifest(c.data_dir)
  path = os.path.join(c.data_dir, MANIFEST)
  if manifest["dataset"] != c.dataset:
    raise ValueError(f"{path}: prepared for {manifest['dataset']!r}, config says {c.dataset!r}")
  if c.kind == "audio" and manifest["params"]["sample_rate"] != c.sample_rate:
    raise ValueError(f"{path}: audio at {manifest['params']['sample_rate']} Hz, config "
                     f"data.sample_rate is {c.sample_rate}")
  key = _split_key(split, manifest["splits"], path)
  return manifest, manifest["splits"][key]


def _tfds_builder(c, split):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = c.tfds_config or f"ucf101_{split}"
  return tfds.builder(f"ucf101/{name}", data_dir=c.data_dir or None)


def describe(c, split):
  """dict(classes, num_classes, num_train, num_test) of `split` of the configured source."""
  _check_config(c)
  if c.source == "tfds":
    builder = _tfds_builder(c, split)
    splits = builder.info.splits
    if "train" not in splits or "test" not in splits:
      raise FileNotFoundError(
          f"TFDS {builder.info.full_name} is not generated in {builder.data_dir_root}: run "
          f"`tfds build ucf101 --config={builder.builder_config.name} --data_dir=...` (it "
          "downloads UCF101) or prepare the files with python -m avjax.prepare_downstream")
    label = builder.info.features["label"]
    return dict(classes=list(label.names), num_classes=label.num_classes,
                num_train=builder.info.splits["train"].num_examples,
                num_test=builder.info.splits["test"].num_examples)
  manifest, clips = _records_info(c, split)
  return dict(classes=list(manifest["classes"]), num_classes=len(manifest["classes"]),
              num_train=len(clips["train"]), num_test=len(clips["test"]))


def _source(c, split, subset, *, train, seed, process_index, process_count):
  """Clips of `subset` ("train"|"test") as {"frames"|"audio", "step", "label"} elements.

  Train: an endless stream, shuffled across files; test: every clip once, in a fixed
  order, clip i read by host i % process_count.
  """
  if c.source == "tfds":
    return _tfds_source(c, split, subset, train=train, seed=seed,
                        process_index=process_index, process_count=process_count)
  manifest, clips = _records_info(c, split)
  ids = list(clips[subset])
  if not ids:
    raise ValueError(f"{c.data_dir}: split {split} has no {subset} clips")
  labels = {x["id"]: x["label"] for x in manifest["clips"]}
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.constant(
          [labels[i] for i in ids], tf.int32)), default_value=-1)
  files = [os.path.join(c.data_dir, s["records"]) for s in manifest["shards"] if s["num_clips"]]
  step = float(manifest["params"]["fps"]) / c.fps

  def parse(serialized):
    ex = records.parse_snippet(serialized)
    out = {"label": table.lookup(ex["title_id"]), "step": tf.constant(step, tf.float32)}
    if c.kind == "video":
      out["frames"] = ex["frames"]
    else:
      out["audio"] = ex["audio"]
    return out

  by_file = train and len(files) >= process_count
  ds = tf.data.Dataset.from_tensor_slices(files)
  if train:
    if by_file:  # each host reads its own files
      ds = ds.shard(process_count, process_index)
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(16, len(files)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  else:
    ds = ds.flat_map(tf.data.TFRecordDataset)
  ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).filter(lambda x: x["label"] >= 0)
  if not by_file:
    ds = ds.shard(process_count, process_index)
  return ds


def _tfds_source(c, split, subset, *, train, seed, process_index, process_count):
  """UCF101 from the TFDS builder (frames at 25 fps, JPEG; decoded only where sampled)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _tfds_builder(c, split)
  name = tfds.even_splits(subset, n=process_count, drop_remainder=False)[process_index]
  ds = builder.as_dataset(
      split=name, shuffle_files=train, decoders={"video": tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=seed))
  step = TFDS_UCF101_FPS / c.fps
  ds = ds.map(lambda ex: {"frames": ex["video"], "label": tf.cast(ex["label"], tf.int32),
                          "step": tf.constant(step, tf.float32)})
  return ds.repeat() if train else ds


# UCF101 is recorded at 25 fps and the TFDS builder keeps every frame.
TFDS_UCF101_FPS = 25.0


def _output(x, c):
  return tf.cast(x, tf.bfloat16) if c.dtype == "bfloat16" else tf.cast(x, tf.float32)


def train_dataset(c, split, *, batch_size, seed=None, process_index=0, process_count=1):
  """Endless batches {kind: inputs, "label"} of this host's share (`batch_size` per host).

  Video inputs are [B, num_frames, crop, crop, 3], audio [B, mel_bins, frames, 1].
  `seed` (default c.seed) fixes the order and augmentations; a resumed run passes a new one.
  """
  _check_config(c)
  seed = c.seed if seed is None else int(seed)
  seed = seed * 1000 + process_index
  ds = _source(c, split, "train", train=True, seed=seed, process_index=process_index,
               process_count=process_count)
  ds = ds.shuffle(c.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))

  def augment(ex, rng):
    if c.kind == "video":
      x = normalize_video(video_train_view(ex["frames"], ex["step"], rng, c), c)
    else:
      x = audio_train_view(ex["audio"], rng, c)
    return {c.kind: _output(x, c), "label": ex["label"]}

  ds = ds.map(augment, num_parallel_calls=_calls(c))
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(c.prefetch)


def _calls(c):
  return tf.data.AUTOTUNE if c.num_parallel in (-1, None) else int(c.num_parallel)


def test_dataset(c, split, *, batch_size, process_index=0, process_count=1):
  """Batches {kind: views, "label"} of this host's test clips, each once (last batch short).

  Video views are [B, 30, num_frames, crop, crop, 3], audio [B, 10, mel_bins, frames, 1].
  """
  _check_config(c)
  ds = _source(c, split, "test", train=False, seed=0, process_index=process_index,
               process_count=process_count)

  def views(ex):
    if c.kind == "video":
      x = normalize_video(video_test_views(ex["frames"], ex["step"], c), c)
    else:
      x = audio_test_views(ex["audio"], c)
    return {c.kind: _output(x, c), "label": ex["label"]}

  ds = ds.map(views, num_parallel_calls=_calls(c))
  return ds.batch(batch_size).prefetch(c.prefetch)


def test_batches(c, split, *, batch_size, num_test, process_index=0, process_count=1):
  """Numpy test batches of exactly `batch_size` clips with a 0/1 "mask" for padding.

  Every host yields the same number of batches, ceil(ceil(num_test / hosts) / batch_size),
  so the jitted evaluation step runs in lockstep on all of them.
  """
  num_batches = -(-(-(-num_test // process_count)) // batch_size)
  it = test_dataset(c, split, batch_size=batch_size, process_index=process_index,
                    process_count=process_count).as_numpy_iterator()
  template = None
  for _ in range(num_batches):
    batch = next(it, None)
    if batch is None:
      if template is None:
        raise ValueError(f"split {split}: no test clips on host {process_index}")
      batch = {k: v[:0] for k, v in template.items()}
    template = batch
    n = len(batch["label"])
    pad = batch_size - n
    out = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) if pad else v
           for k, v in batch.items()}
    out["mask"] = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    yield out
  if next(it, None) is not None:
    raise ValueError(f"split {split}: more test clips than the expected {num_test}")
