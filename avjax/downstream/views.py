"""TF ops of the downstream inputs: training views and test views of video and audio clips.

Video (Section 4.1): a random clip of num_frames at the config's fps, scale jitter of the
shorter side and a random crop in one resample, flip, colour jitter; test views are
test_clips uniformly spaced clips x test_crops crops. Audio: random 3-s clips as log-mel
with time and frequency masks; test views are test_clips uniformly spaced clips.
"""

import tensorflow as tf

from avjax.data import audio as audio_lib
from avjax.data import ops


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
    video = ops.color_jitter(video, c.color_jitter, seeds[5])
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
  """[0, 1] -> (x - mean) / std per channel, as in pretraining (data_config.VIDEO_MEAN/STD)."""
  mean = tf.constant(c.video_mean, tf.float32)
  return (video - mean) / tf.constant(c.video_std, tf.float32)


# --- Audio transforms.


def _window(c):
  return int(round(c.clip_seconds * c.sample_rate))


def _log_mel(pcm, c):
  """The log-mel of the config (its n_fft, hop and mel_bins; the paper's by default)."""
  return audio_lib.log_mel_spectrogram(
      pcm, sample_rate=c.sample_rate, n_fft=c.get("n_fft", audio_lib.N_FFT),
      hop=c.get("hop", audio_lib.HOP), mel_bins=c.get("mel_bins", audio_lib.MEL_BINS))


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
  spec = _log_mel(pcm[start:start + size], c)
  return time_frequency_mask(spec, c.audio_mask_fraction, seeds[1])


def audio_test_views(pcm, c):
  """10 uniformly spaced 3-s clips as log-mel spectrograms [test_clips, mel_bins, frames, 1]."""
  size = _window(c)
  pcm = _fit(pcm, size)
  last = tf.cast(tf.shape(pcm)[0] - size, tf.float32)
  starts = tf.cast(tf.round(tf.linspace(0.0, last, c.test_clips)), tf.int32)
  clips = tf.gather(pcm, starts[:, None] + tf.range(size)[None, :])
  return _log_mel(clips, c)
