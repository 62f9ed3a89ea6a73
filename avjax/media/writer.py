"""Writes H.264 (+ AAC or FLAC) files with PyAV, atomically (temporary name, renamed on close)."""

import fractions
import os

import av
import numpy as np

_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
               ".avi": "avi"}  # AVI: the container of UCF101 and HMDB51


class MediaWriter:
  """Writes an H.264 (+ AAC or FLAC) file with PyAV, atomically: a temporary name renamed on
  close. FLAC (lossless) encodes about ten times faster than AAC, for large synthetic sets.

  Video frames get timestamps i / fps, or, with `vfr=True`, the explicit `times`
  passed to `write_frames` (variable frame rate). `channels=0` writes no audio track.
  `rotation` (counter-clockwise degrees) is stored as a display matrix, as phones do
  for video shot upright: players turn the frames by it.
  """

  def __init__(self, path, *, width, height, fps, sample_rate=48000, channels=2,
               crf=23, preset="veryfast", faststart=False, vfr=False, rotation=0,
               audio_codec="aac"):
    ext = os.path.splitext(path)[1].lower()
    if ext not in _CONTAINERS:
      raise ValueError(f"{path}: cannot write {ext!r}; use one of {sorted(_CONTAINERS)}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.path = path
    self._tmp = f"{path}.{os.getpid()}.tmp"
    options = {"movflags": "faststart"} if faststart and _CONTAINERS[ext] != "matroska" else {}
    self._container = av.open(self._tmp, "w", format=_CONTAINERS[ext], options=options)
    self._rate = fractions.Fraction(fps).limit_denominator(1001)
    self._video = self._container.add_stream("libx264", rate=self._rate)
    self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
    self._video.options = {"crf": str(crf), "preset": preset}
    if rotation:
      self._video.set_display_rotation(rotation)
    self._vfr = vfr
    self._time_base = fractions.Fraction(1, 90000) if vfr else 1 / self._rate
    self._video.codec_context.time_base = self._time_base
    self._video.time_base = self._time_base
    self._audio = None
    self._channels, self._sample_rate = channels, sample_rate
    if channels:
      if audio_codec not in ("aac", "flac"):
        raise ValueError(f"{path}: audio_codec={audio_codec!r}; expected 'aac' or 'flac'")
      self._audio = self._container.add_stream(audio_codec, rate=sample_rate)
      self._audio.layout = {1: "mono", 2: "stereo"}[channels]
    self._num_frames = self._num_samples = 0

  def write_frames(self, frames, times=None):
    """frames: uint8 [N, H, W, 3]; times: seconds of each frame (only with vfr=True)."""
    if (times is not None) != self._vfr:
      raise ValueError(f"{self.path}: pass frame times exactly when the writer is vfr")
    for j, frame in enumerate(frames):
      vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
      vf.pts = int(round(times[j] / self._time_base)) if self._vfr else self._num_frames
      vf.time_base = self._time_base
      self._container.mux(self._video.encode(vf))
      self._num_frames += 1

  def write_audio(self, samples):
    """samples: float32 [channels, n] (or [n] for mono) in [-1, 1], continuing the track."""
    samples = np.asarray(samples, np.float32)
    samples = samples[None] if samples.ndim == 1 else samples
    if samples.shape[0] != self._channels:
      raise ValueError(f"{self.path}: {samples.shape[0]} audio channels, "
                       f"the stream has {self._channels}")
    if not samples.shape[1]:
      return
    if self._audio.codec_context.name == "flac":  # FLAC takes 16-bit samples, interleaved
      pcm = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)
      af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T.reshape(1, -1)), format="s16",
                                      layout=self._audio.layout.name)
    else:
      af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp",
                                      layout=self._audio.layout.name)
    af.sample_rate = self._sample_rate
    af.pts = self._num_samples
    af.time_base = fractions.Fraction(1, self._sample_rate)
    self._container.mux(self._audio.encode(af))
    self._num_samples += samples.shape[1]

  def close(self):
    try:
      self._container.mux(self._video.encode())
      if self._audio is not None:
        # The AAC encoder drops a last partial frame: pad it with silence so no audio is lost.
        frame_size = self._audio.codec_context.frame_size or 1024
        pad = -self._num_samples % frame_size
        if pad and self._audio.codec_context.name == "aac":
          self.write_audio(np.zeros((self._channels, pad), np.float32))
        self._container.mux(self._audio.encode())
      self._container.close()
      os.replace(self._tmp, self.path)
    except BaseException:
      self.abort()
      raise

  def abort(self):
    try:
      self._container.close()
    except Exception:  # pylint: disable=broad-except
      pass  # already failing; the temporary file goes either way
    if os.path.exists(self._tmp):
      os.remove(self._tmp)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    if exc_type is None:
      self.close()
    else:
      self.abort()
