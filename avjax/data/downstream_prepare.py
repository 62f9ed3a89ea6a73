"""Prepares a downstream dataset once: every clip decoded into TFRecord shards.

`prepare` (run by `python -m avjax.prepare_downstream`) reads a dataset in its standard
layout (downstream.read_layout) and decodes every clip once with PyAV into TFRecord shards
in the snippet record format of records.py (one record per whole clip: title_id = clip
id, all frames at 10 fps as JPEG, audio as 48 kHz mono int16), plus `manifest.json`
(classes, clips, splits) and `prepare_report.json` (clips listed but missing, unreadable,
unlisted). `load_manifest` reads and checks the manifest.

Layout of a prepared directory:
  OUT/manifest.json                  format, params, classes, clips, splits
  OUT/prepare_report.json            what was skipped and why
  OUT/titles/shard-NNNNN.tfrecord    one tf.train.Example per clip (records.encode_snippet)
  OUT/titles/shard-NNNNN.index.npy   record offsets (records.TitleWriter)
  OUT/shards/shard-NNNNN.json        the shard's clips; present exactly when it is complete
"""

import concurrent.futures
import io
import multiprocessing
import os
import time

import av
import numpy as np
from absl import logging
from PIL import Image

from avjax import fileio
from avjax.data import audio as audio_lib
from avjax.data import downstream
from avjax.data import records

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


def _open(path):
  try:
    return av.open(path)
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise UnreadableClip(f"cannot open: {e}") from e


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
  container = _open(path)
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
  container = _open(path)
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
  layout = downstream.read_layout(dataset, root)
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
