"""Cuts one title's decoded frames and audio into snippets x_{n,m} = (a_{n,m}, v_{n,m}).

Timestamps, not frame counts, decide what goes where: frames follow the rule of
media.decode.FrameSampler (the last frame with pts <= t0 + i / fps), and audio samples
are placed at their own timestamps on the same time line (gaps become silence, overlaps
are dropped). A snippet is written as soon as its frames and audio are complete.
"""

import math

import numpy as np

from avjax.data import example
from avjax.data import records
from avjax.ingest import shots
from avjax.media import decode

# Audio timestamp jumps larger than this are gaps or overlaps, not jitter.
_RESYNC_SECONDS = 0.01


class Cutter:
  """Streams decoded frames and audio into snippets; writes each snippet once it is complete.

  Attributes set as it goes: t0 (time of the first frame), written (snippets written),
  out_size ((width, height) of stored frames, as displayed) and rotation (counter-clockwise
  degrees that turn frames upright), both set by the caller on the first frame,
  shot_times / shot_scores (frame change scores for shots.detect_shots), frame_times /
  frame_hists (every frame's colour histogram, for scenes.structure).
  """

  def __init__(self, title_id, params, writer):
    self.title_id = title_id
    self.writer = writer
    self.T = params["frames_per_snippet"]
    self.rate = params["sample_rate"]
    self.S = records.samples_per_snippet(params)
    self.seconds = records.snippet_seconds(params)
    self.quality = params["jpeg_quality"]
    self.out_size = None
    self.rotation = 0
    self.t0 = None
    # Video: frames on the target time line, and the JPEGs of the pending snippet.
    self.sampler = decode.FrameSampler(params["fps"])
    self.prev_hist = None
    self.frames = []
    self.video_time = -math.inf
    self.shot_times, self.shot_scores = [], []
    self.frame_times, self.frame_hists = [], []
    # Audio: samples placed since t0 that are not in a written snippet yet.
    self.audio = []
    self.audio_buffered = 0
    self.audio_total = 0
    self.audio_pending = []  # before t0 is known
    self.written = 0

  @property
  def last_frame(self):
    """(frame, time) of the latest frame taken, or (None, None)."""
    prev = self.sampler.prev
    return (prev.frame, self.sampler.prev_time) if prev is not None else (None, None)

  def video_frame(self, frame, time_s):
    emitted = self.sampler.push(
        decode.Encoded(frame, self.out_size, self.quality, self.rotation), time_s)
    if emitted is None:
      return  # out of order or duplicate timestamp: the earlier frame stands
    if self.t0 is None:
      self.t0 = time_s
      for pts, data in self.audio_pending:
        self._place_audio(pts, data)
      self.audio_pending = []
    self.frames += [e.jpeg() for e in emitted]
    hist = shots.frame_histogram(frame)
    self.frame_times.append(time_s - self.t0)
    self.frame_hists.append(hist)
    if self.prev_hist is not None:
      self.shot_times.append(time_s - self.t0)
      self.shot_scores.append(shots.change_score(hist, self.prev_hist))
    self.prev_hist = hist
    self.video_time = time_s
    self._write_ready()

  def end_video(self, end_time):
    if self.sampler.prev is not None:
      self.frames += [e.jpeg() for e in self.sampler.finish(end_time)]
      self.video_time = end_time
    self._write_ready()

  def audio_frame(self, time_s, data):
    if self.t0 is None:
      self.audio_pending.append((time_s, data))
    else:
      self._place_audio(time_s, data)
      self._write_ready()

  def _place_audio(self, time_s, data):
    """Places samples at their timestamp: gaps become silence, overlaps are dropped."""
    if time_s is not None:
      pos = int(round((time_s - self.t0) * self.rate))
      drift = pos - self.audio_total
      if self.audio_total == 0 or abs(drift) > _RESYNC_SECONDS * self.rate:
        if drift > 0:
          self._append(np.zeros(drift, np.int16))
        elif drift < 0:
          data = data[-drift:]
    if data.size:
      self._append(data)

  def _append(self, data):
    self.audio.append(data)
    self.audio_buffered += data.size
    self.audio_total += data.size

  def end_audio(self):
    self._write_ready()

  def _write_ready(self):
    while len(self.frames) >= self.T and self.audio_buffered >= self.S:
      span_end = self.t0 + (self.written + 1) * self.seconds
      if self.video_time < span_end - decode.EPS:
        return  # video may stop inside this span; then the snippet is not complete
      audio = np.concatenate(self.audio)
      self.audio = [audio[self.S:]]
      self.audio_buffered -= self.S
      self.writer.write(example.encode_snippet(
          self.title_id, self.written, round(self.written * self.seconds, 6),
          self.frames[:self.T], audio[:self.S]))
      self.frames = self.frames[self.T:]
      self.written += 1

  @property
  def audio_end(self):
    return self.t0 + self.audio_total / self.rate
