"""Ingest of one title: a video file in, its snippet records, index and entry file out.

A title n is cut into M_n = floor(duration / 3.2 s) non-overlapping snippets
x_{n,m} = (a_{n,m}, v_{n,m}) (paper Section 3); docs/data_format.md describes the output.
`ingest_title` is a pure function of its arguments (title file in, record file + index +
entry out), so any runner can map it over titles.
"""

import os
import stat

import av
import numpy as np

from avjax import fileio
from avjax.data import records
from avjax.ingest import cutter as cutter_lib
from avjax.ingest import discover
from avjax.ingest import scenes
from avjax.ingest import shots
from avjax.media import decode
from avjax.media import image


class IngestError(Exception):
  """A title that cannot be ingested; the message says why."""


def entry_path(dataset_dir, title_id):
  """The per-title entry file whose existence marks a finished title."""
  return os.path.join(dataset_dir, records.TITLES_DIR, f"{title_id}.json")


def _decode_into(container, video, audio, cutter, params):
  """Demuxes and decodes both streams into `cutter`; returns where each stream ended (s)."""
  resampler = decode.mono_resampler(params["sample_rate"])
  last_time = None
  default_step = 1 / float(video.guessed_rate or video.average_rate or 25)
  where = 0.0

  def resampled(frames):
    for out in frames:
      cutter.audio_frame(out.time, out.to_ndarray().reshape(-1).astype(np.int16, copy=False))

  try:
    for packet in container.demux(video, audio):
      for frame in packet.decode():
        if packet.stream is video:
          t = frame.time
          if t is None:  # no timestamp (some AVI): assume the nominal frame rate
            t = last_time + default_step if last_time is not None else 0.0
          if cutter.out_size is None:  # stored upright: the display rotation is applied
            cutter.rotation = image.rotation_of(frame, video)
            cutter.out_size = image.display_size(frame, video, params["short_side"],
                                                 cutter.rotation)
          cutter.video_frame(frame, t)
          last_time = where = t
        else:
          resampled(resampler.resample(frame))
    resampled(resampler.resample(None))
  except av.error.FFmpegError as e:
    raise IngestError(f"decode error near {where:.1f} s: {e}") from e
  frame, t = cutter.last_frame
  if frame is None:
    raise IngestError("no video frames could be decoded")
  step = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
  video_end = t + (step if step > 0 else default_step)
  cutter.end_video(video_end)
  cutter.end_audio()
  return video_end, cutter.audio_end


def _kind_of_file(mode):
  for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                     (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                     (stat.S_ISDIR, "a folder")):
    if test(mode):
      return name
  return "not a regular file"


def _open(path):
  try:
    mode = os.stat(path).st_mode
  except OSError as e:
    raise IngestError(f"cannot open: {e}") from e
  if not stat.S_ISREG(mode):
    # Opening a FIFO or a device would block (or read forever).
    raise IngestError(f"not a regular file ({_kind_of_file(mode)}); skipped without opening it")
  if os.path.getsize(path) == 0:
    raise IngestError("empty file (0 bytes)")
  try:
    return decode.open_container(path)
  except decode.MediaError as e:
    raise IngestError(str(e)) from e


def ingest_title(path, dataset_dir, title_meta, params, *, threads=1):
  """Ingests one title file; returns its manifest entry.

  Writes `titles/<id>.tfrecord`, its index and the entry file `titles/<id>.json`,
  each atomically and in that order. Raises IngestError (and leaves nothing behind)
  when the file cannot be opened or decoded, has no audio or video, is truncated,
  or is shorter than one snippet.

  Args:
    path: video file.
    dataset_dir: output dataset directory.
    title_meta: dict with id, kind ("movie" or "episode"), show (None for movies), genres.
    params: ingest params (`make_params`).
    threads: decoder threads (1 for one core per title).
  """
  title_id = title_meta["id"]
  with _open(path) as container:
    video = decode.pick_stream(container.streams.video)
    audio = decode.pick_stream(container.streams.audio)
    if video is None:
      raise IngestError("no video track")
    if audio is None:
      raise IngestError("no audio track")
    video.thread_type = "AUTO" if threads > 1 else "SLICE"
    video.codec_context.thread_count = threads
    with records.TitleWriter(dataset_dir, title_id) as writer:
      cutter = cutter_lib.Cutter(title_id, params, writer)
      video_end, audio_end = _decode_into(container, video, audio, cutter, params)
      # A file cut short mid-way may still decode cleanly up to the cut; its header knows better.
      for name, stream, end in (("video", video, video_end), ("audio", audio, audio_end)):
        declared = decode.declared_end(container, stream)
        if declared is not None and declared - end > max(1.0, 0.01 * declared):
          raise IngestError(f"truncated: {name} ends at {end:.1f} s, "
                            f"the file says {declared:.1f} s")
      duration = min(video_end, audio_end) - cutter.t0
      if not len(writer):
        raise IngestError(f"too short: {max(duration, 0):.2f} s with both audio and video, "
                          f"one snippet is {records.snippet_seconds(params)} s")
      expected = int((duration + decode.EPS) // records.snippet_seconds(params))
      if len(writer) != expected:
        raise IngestError(f"internal: {len(writer)} snippets written, {expected} expected "
                          f"for {duration:.3f} s")
  records_rel, index_rel = records.record_paths(dataset_dir, title_id)
  width, height = cutter.out_size
  boundaries = shots.detect_shots(cutter.shot_times, cutter.shot_scores,
                                  params["shot_threshold"], params["min_shot_seconds"])
  snippet_shots, snippet_scenes = scenes.structure(
      boundaries, cutter.frame_times, cutter.frame_hists, len(writer),
      records.snippet_seconds(params), params["scene_threshold"])
  entry = dict(
      id=title_id, kind=title_meta["kind"], show=title_meta["show"],
      genres=list(title_meta.get("genres") or []), duration=round(duration, 3),
      num_snippets=len(writer), split=discover.split_of(title_meta, params["val_fraction"]),
      records=records_rel, index=index_rel, frame_size=[height, width],
      shots=boundaries, snippet_shots=snippet_shots, snippet_scenes=snippet_scenes,
      source=os.path.abspath(path),
      # What each track covers: snippets stop where the shorter one does (ingest_report).
      video_seconds=round(video_end - cutter.t0, 3), audio_seconds=round(audio_end - cutter.t0, 3))
  fileio.write_json(entry_path(dataset_dir, title_id), entry)
  return entry
