"""Decoding with PyAV: frames at a target frame rate by timestamp, and resampled audio.

The timestamp rule (shared by ingest and the downstream preparation): the frame stored
for target time t = t0 + k / fps is the last decoded frame whose presentation time is
<= t, with t0 the first frame's time. So 25, 29.97 or variable frame-rate sources come
out evenly at the target rate, and a frame shown at several target times is encoded once.
"""

import av
import numpy as np

from avjax.media import image

EPS = 1e-6  # s; timestamps that differ by less are equal


class MediaError(Exception):
  """A file that cannot be opened or decoded; the message says why."""


def open_container(path):
  """av.open(path), with failures raised as MediaError."""
  try:
    return av.open(path)
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise MediaError(f"cannot open: {e}") from e


def pick_stream(streams):
  """The default stream of a kind (not cover art), else the first one, else None."""
  usable = [s for s in streams if not s.disposition & av.stream.Disposition.attached_pic]
  default = [s for s in usable if s.disposition & av.stream.Disposition.default]
  return (default or usable or [None])[0]


class Encoded:
  """A decoded frame and its JPEG (upright, image.frame_to_jpeg), made on first use and kept."""

  def __init__(self, frame, size, quality, rotation=0):
    self.frame, self._size, self._quality, self._jpeg = frame, size, quality, None
    self._rotation = rotation

  def jpeg(self):
    if self._jpeg is None:
      self._jpeg = image.frame_to_jpeg(self.frame, self._size, self._quality, self._rotation)
    return self._jpeg


class FrameSampler:
  """Places decoded frames on the target time line t0 + k / fps (module docstring).

  `push(item, t)` returns the previous item repeated once per target time before t (an
  empty list for the first frame), or None when `t` is not after the previous frame's
  time (out of order or duplicate: the earlier frame stands). `finish(end)` fills the
  targets before the end of the last frame.
  """

  def __init__(self, fps):
    self.fps = float(fps)
    self.t0 = None
    self.count = 0  # targets filled so far
    self.prev = None
    self.prev_time = None

  def _until(self, t):
    n = 0
    while self.t0 + (self.count + n) / self.fps < t - EPS:
      n += 1
    self.count += n
    return [self.prev] * n

  def push(self, item, t):
    if self.prev is None:
      self.t0 = t
      out = []
    elif t <= self.prev_time + EPS:
      return None
    else:
      out = self._until(t)
    self.prev, self.prev_time = item, t
    return out

  def finish(self, end_time):
    return self._until(end_time) if self.prev is not None else []


def decode_frames(path, *, fps, short_side, jpeg_quality=90):
  """Frames of a video file at `fps`, shorter side `short_side`, upright, as JPEG bytes.

  Returns:
    (list of JPEG bytes, duration in seconds).
  Raises:
    MediaError: the file cannot be opened or has no decodable video frame.
  """
  container = open_container(path)
  out = []
  try:
    stream = pick_stream(container.streams.video)
    if stream is None:
      raise MediaError("no video stream")
    stream.thread_type = "AUTO"
    period = 1.0 / float(stream.average_rate or stream.guessed_rate or 25)
    sampler = FrameSampler(fps)
    rotation = None
    try:
      for frame in container.decode(stream):
        t = frame.time
        if t is None:  # no timestamp (some AVI): assume the nominal frame rate
          t = sampler.prev_time + period if sampler.prev is not None else 0.0
        if rotation is None:
          rotation = image.rotation_of(frame, stream)
        size = image.display_size(frame, stream, short_side, rotation)
        emitted = sampler.push(Encoded(frame, size, jpeg_quality, rotation), t)
        out.extend(e.jpeg() for e in emitted or ())
      if sampler.prev is not None:  # the last frame lasts one frame period
        out.extend(e.jpeg() for e in sampler.finish(sampler.prev_time + period))
    except (av.error.FFmpegError, ValueError) as e:
      raise MediaError(f"decoding failed after {len(out)} frames: {e}") from e
  finally:
    container.close()
  if not out:
    raise MediaError("no decodable video frames")
  return out, len(out) / fps


def mono_resampler(sample_rate):
  """FFmpeg's resampler to mono 16-bit PCM at `sample_rate` (downmixing any layout)."""
  return av.AudioResampler(format="s16", layout="mono", rate=sample_rate)


def pcm_of(frames):
  """The int16 samples of resampled audio frames, one array per frame."""
  return [f.to_ndarray().reshape(-1).astype(np.int16, copy=False) for f in frames]


def decode_audio(path, *, sample_rate):
  """The audio of a file as mono int16 PCM at `sample_rate`.

  Raises:
    MediaError: the file cannot be opened or has no decodable audio.
  """
  container = open_container(path)
  chunks = []
  try:
    if not container.streams.audio:
      raise MediaError("no audio stream")
    stream = container.streams.audio[0]
    resampler = mono_resampler(sample_rate)
    try:
      for frame in container.decode(stream):
        chunks += pcm_of(resampler.resample(frame))
      chunks += pcm_of(resampler.resample(None))
    except (av.error.FFmpegError, ValueError) as e:
      raise MediaError(f"audio decoding failed: {e}") from e
  finally:
    container.close()
  pcm = np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)
  if not len(pcm):
    raise MediaError("no decodable audio samples")
  return pcm


def declared_end(container, stream):
  """Where the file says a stream ends (s), or None when it does not say."""
  if stream.duration is not None and stream.time_base is not None:
    return float((stream.start_time or 0) * stream.time_base + stream.duration * stream.time_base)
  if container.duration is not None:
    return (container.start_time or 0) / 1e6 + container.duration / 1e6
  return None
