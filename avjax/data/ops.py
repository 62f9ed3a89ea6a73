"""The preprocessing ops of both input pipelines: one vocabulary, each pipeline names its ops.

In the spirit of big_vision's pp ops: small TensorFlow functions of tensors and a stateless
[2] seed, each doing one thing. The pretraining input (avjax.data.snippets) and the
downstream one (avjax.downstream.views) differ only in which ops they name:

  pretraining  train: decode_crop (random) | video_to_float (jitter_factors) | log_mel |
                      band_dropout;  eval: decode_crop (centre) | video_to_float | log_mel
  downstream   video train: clip_indices | decode_frames | scale_jitter_crop | random_flip |
                      video_to_float (jitter_factors);  test: clip_indices | decode_frames |
                      three_crops | video_to_float
               audio train: random_clip | log_mel | time_frequency_mask;
                      test: even_clips | log_mel

Randomness is a pure function of the seed, so a resumed run draws the same augmentations.
`pad_batch`, `hide_gpus_from_tensorflow`, `parallel_calls` and `dataset_options` serve both
pipelines' batching and set-up.
"""

import functools
import os

import numpy as np
import tensorflow as tf

from avjax.data import audio


def pad_batch(batch, size):
  """A host batch of fewer than `size` rows zero-padded to `size`, with a bool "mask" of
  the real rows: the last batch of an evaluation keeps the jitted step's shape."""
  real = len(next(iter(batch.values())))
  pad = size - real
  out = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) if pad else v
         for k, v in batch.items()}
  out["mask"] = np.arange(size) < real
  return out


def hide_gpus_from_tensorflow():
  """TensorFlow only feeds data: keep it off accelerators, which belong to JAX.

  Called when a pipeline is built (not on import); tensorflow-cpu has no GPUs anyway.
  """
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF already initialised its devices
    pass


def parallel_calls(num_parallel):
  """Decode calls in flight: `num_parallel`, or two per core this process may use (-1).

  One, two or four per core decode at the same rate within 3% on 2 cores (docs/
  benchmarks.md, "Input pipeline: decode parallelism"); two leave a call ready while
  another waits on the record reader.
  """
  if num_parallel in (None, -1):
    return 2 * len(os.sched_getaffinity(0))
  return int(num_parallel)


def dataset_options():
  """The tf.data options of both pipelines.

  Parallelism is fixed (`parallel_calls`), not tuned: with autotuning on, dropping an
  iterator can wait for the tuner's sleep (seconds to a minute, TensorFlow 2.21), which
  every run, evaluation and restart would pay. The order of elements is kept either way.
  """
  options = tf.data.Options()
  options.deterministic = True  # batches must keep the groups' and clips' order
  options.autotune.enabled = False
  # Parallelism comes from decoding many snippets or clips at once; threads inside one op
  # would only oversubscribe the cores.
  options.threading.max_intra_op_parallelism = 1
  return options


# ---------------------------------------------------------------------------
# Frames and crops (pixel values 0..255 out).


def decode_frames(frames):
  """[T] encoded frames (JPEG/PNG) -> [T, H, W, 3] uint8; uint8 frames pass through."""
  if frames.dtype == tf.uint8:
    return frames
  return tf.map_fn(lambda f: tf.io.decode_image(f, channels=3, expand_animations=False),
                   frames, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


def _crop_offsets(height, width, size, train, seeds):
  """Top-left corner of the crop: random in training, the centre in evaluation."""
  if not train:
    return (height - size) // 2, (width - size) // 2
  oy = tf.random.stateless_uniform([], seeds[0], 0, height - size + 1, tf.int32)
  ox = tf.random.stateless_uniform([], seeds[1], 0, width - size + 1, tf.int32)
  return oy, ox


def decode_crop(frames, size, short, train, seeds):
  """JPEG frames -> uint8 [T, size, size, 3]: the shorter side at `short`, then the crop.

  Frames stored at the wanted short side (as ingest writes them) are cropped while
  decoding, which decodes only the crop's blocks.
  """
  shape = tf.image.extract_jpeg_shape(frames[0])
  height, width = shape[0], shape[1]

  def crop_while_decoding():
    oy, ox = _crop_offsets(height, width, size, train, seeds)
    window = tf.stack([oy, ox, size, size])
    return tf.stack([tf.io.decode_and_crop_jpeg(f, window, channels=3) for f in frames])

  def resize_then_crop():
    scale = short / tf.cast(tf.minimum(height, width), tf.float32)
    new_h = tf.where(height <= width, short,
                     tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
    new_w = tf.where(height <= width,
                     tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32), short)
    video = tf.stack([tf.io.decode_jpeg(f, channels=3) for f in frames])
    video = tf.image.resize(video, tf.stack([new_h, new_w]), antialias=True)
    oy, ox = _crop_offsets(new_h, new_w, size, train, seeds)
    video = tf.clip_by_value(tf.round(video[:, oy:oy + size, ox:ox + size, :]), 0.0, 255.0)
    return tf.cast(video, tf.uint8)

  return tf.cond(tf.minimum(height, width) == short, crop_while_decoding, resize_then_crop)


def clip_indices(starts, num_frames, step, length):
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


def scale_jitter_crop(images, scale_min, scale_max, crop, seeds):
  """Scale jitter of the shorter side in [scale_min, scale_max], then a random crop, in one
  resample (crop_and_resize): [n, crop, crop, 3] float pixel values. `seeds`: three."""
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  short = tf.random.stateless_uniform([], seeds[0], scale_min, scale_max + 1, tf.int32)
  rh, rw, sy, sx = _resized_shape(height, width, short)
  y0 = tf.floor(tf.random.stateless_uniform([], seeds[1], 0.0, 1.0) * (rh - crop + 1))
  x0 = tf.floor(tf.random.stateless_uniform([], seeds[2], 0.0, 1.0) * (rw - crop + 1))
  box = _box(y0, x0, crop, sy, sx, height, width)
  n = tf.shape(images)[0]
  return tf.image.crop_and_resize(tf.cast(images, tf.float32), tf.tile(box[None], [n, 1]),
                                  tf.range(n), [crop, crop])


def three_crops(images, short_side, crop, num_crops):
  """Left, center and right crops along the longer side (top, center, bottom if portrait),
  centered along the shorter, after resizing the shorter side to `short_side`; or the
  center crop alone (num_crops=1): [num_crops, n, crop, crop, 3] float pixel values."""
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  rh, rw, sy, sx = _resized_shape(height, width, short_side)
  size = float(crop)
  center_y, center_x = tf.floor((rh - size) / 2), tf.floor((rw - size) / 2)
  if num_crops == 1:
    offsets = [(center_y, center_x)]
  else:
    landscape = rw >= rh
    offsets = [(tf.where(landscape, center_y, y), tf.where(landscape, x, center_x))
               for y, x in ((0.0, 0.0), (center_y, center_x), (rh - size, rw - size))]
  boxes = tf.stack([_box(y, x, crop, sy, sx, height, width) for y, x in offsets])
  n, k = tf.shape(images)[0], len(offsets)
  crops = tf.image.crop_and_resize(
      tf.cast(images, tf.float32), tf.repeat(boxes, n, axis=0), tf.tile(tf.range(n), [k]),
      [crop, crop])
  return tf.reshape(crops, [k, n, crop, crop, 3])


def random_flip(video, seed):
  """[T, H, W, C] mirrored left-right with probability 1/2."""
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: tf.reverse(video, [2]), lambda: video)


# ---------------------------------------------------------------------------
# Pixel values: [0, 1], colour jitter (Table 2), normalization.


def jitter_factors(sigma, seed):
  """Brightness, contrast and saturation factors, each uniform in [max(0, 1-sigma), 1+sigma]."""
  lo, hi = max(0.0, 1.0 - sigma), 1.0 + sigma
  s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
  return tuple(tf.random.stateless_uniform([], s[i], minval=lo, maxval=hi) for i in range(3))


def apply_color_jitter(video, brightness, contrast, saturation):
  """Applies the factors to all frames, in that order, each followed by clipping to [0, 1].

  Contrast blends with each frame's mean grey level, saturation with each pixel's grey
  level (as torchvision's ColorJitter). Written as x * f + g * (1 - f) so that a factor of
  exactly 1 leaves values bit-for-bit unchanged.
  """
  def grey(x):  # ITU-R 601 luma, as tf.image.rgb_to_grayscale
    return x[..., :1] * 0.2989 + x[..., 1:2] * 0.587 + x[..., 2:] * 0.114
  video = tf.clip_by_value(video * brightness, 0.0, 1.0)
  mean = tf.reduce_mean(grey(video), axis=[-3, -2, -1], keepdims=True)
  video = tf.clip_by_value(video * contrast + mean * (1.0 - contrast), 0.0, 1.0)
  return tf.clip_by_value(video * saturation + grey(video) * (1.0 - saturation), 0.0, 1.0)


@functools.lru_cache(maxsize=None)
def _video_to_float_fn(mean, std, jitter):
  """The XLA-fused pass of `video_to_float` for one (mean, std, jitter on/off).

  Unfused, the broadcasts over the channel axis cost more CPU than the JPEG decoding. The
  constants are made eagerly (init_scope), also when a pipeline's map function is being
  traced: the cached pass serves every pipeline of the process.
  """
  with tf.init_scope():
    scale = tf.constant(1.0 / np.asarray(std, np.float32))
    offset = tf.constant(-np.asarray(mean, np.float32) / np.asarray(std, np.float32))

  @tf.function(jit_compile=True)
  def convert(video, factors):
    x = tf.cast(video, tf.float32) * (1.0 / 255.0)
    if jitter:
      x = apply_color_jitter(x, factors[0], factors[1], factors[2])
    return x * scale + offset

  return convert


def video_to_float(video, mean, std, factors=None):
  """Pixel values 0..255 [T, H, W, 3] (uint8 or float) -> x / 255, colour-jittered by
  `factors` (brightness, contrast, saturation; `jitter_factors`) if given, normalized
  (x - mean) / std per channel: float32, in one XLA-fused pass."""
  convert = _video_to_float_fn(tuple(mean), tuple(std), factors is not None)
  return convert(video, tf.ones([3]) if factors is None else factors)


# ---------------------------------------------------------------------------
# Audio: clips, log-mel, masks (Section 4.1).


def log_mel(pcm, c):
  """The log-mel front end of avjax.data.audio with config `c`'s parameters (defaults where
  `c` does not set them): [..., mel_bins, frames, 1]."""
  keys = dict(sample_rate="sample_rate", n_fft="n_fft", hop="hop", mel_bins="mel_bins",
              mel_lower_hz="mel_lower_hz", mel_upper_hz="mel_upper_hz", log_floor="log_floor",
              mean="audio_mean", std="audio_std")  # argument: config field
  return audio.log_mel_spectrogram(pcm, **{a: c[k] for a, k in keys.items() if k in c})


def _fit(pcm, size):
  """Zero-pads a clip shorter than `size` samples at its end."""
  return tf.pad(pcm, [[0, tf.maximum(size - tf.shape(pcm)[0], 0)]])


def random_clip(pcm, size, seed):
  """A clip of `size` samples from a uniform start (zero-padded if the audio is shorter)."""
  pcm = _fit(pcm, size)
  start = tf.random.stateless_uniform([], seed, 0, tf.shape(pcm)[0] - size + 1, tf.int32)
  return pcm[start:start + size]


def even_clips(pcm, size, count):
  """`count` clips of `size` samples, uniformly spaced from the first sample to the last
  start that fits: [count, size]."""
  pcm = _fit(pcm, size)
  last = tf.cast(tf.shape(pcm)[0] - size, tf.float32)
  starts = tf.cast(tf.round(tf.linspace(0.0, last, count)), tf.int32)
  return tf.gather(pcm, starts[:, None] + tf.range(size)[None, :])


def _random_band(length, max_fraction, width_seed, start_seed):
  """(start, width) of a band of an axis of `length`: width uniform in 0 ..
  floor(max_fraction * length), start uniform where it fits."""
  widest = tf.cast(tf.floor(max_fraction * tf.cast(length, tf.float32)), tf.int32)
  width = tf.random.stateless_uniform([], width_seed, minval=0, maxval=widest + 1,
                                      dtype=tf.int32)
  start = tf.random.stateless_uniform([], start_seed, minval=0, maxval=length - width + 1,
                                      dtype=tf.int32)
  return start, width


def band_dropout(spec, max_fraction, seed):
  """Zeroes a random contiguous band of the time or frequency axis (pretraining, Section 4.1).

  The paper drops "up to 25% from either temporal or frequency axis". Here the axis is
  chosen with probability 1/2, the band as `_random_band`. The band is set to 0, which
  after the fixed normalization is the typical (mean) level.

  Args:
    spec: [mel_bins, frames, 1] float spectrogram.
    max_fraction: the largest band, as a fraction of the axis (0 disables).
    seed: int32/int64 [2] stateless seed.
  """
  if not max_fraction:
    return spec
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
  shape = tf.shape(spec)
  use_time = tf.random.stateless_uniform([], seeds[0]) < 0.5
  length = tf.where(use_time, shape[1], shape[0])
  start, width = _random_band(length, max_fraction, seeds[1], seeds[2])
  time = tf.range(shape[1])[None, :, None]
  freq = tf.range(shape[0])[:, None, None]
  pos = tf.where(use_time, time, freq)  # broadcasts to [mel_bins, frames, 1]
  drop = (pos >= start) & (pos < start + width)
  return tf.where(drop, tf.zeros_like(spec), spec)


def time_frequency_mask(spec, max_fraction, seed):
  """Zeroes one band of up to `max_fraction` of the time axis and one of the mel axis.

  SpecAugment-style masks of downstream training (Section 4.1: "maximum possible length of
  the mask is 50% of the corresponding axis"), each band as `_random_band`. 0 is the mean
  level after the fixed normalization.
  """
  if not max_fraction:
    return spec
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
  shape = tf.shape(spec)
  keep = tf.ones_like(spec, tf.bool)
  for axis, (s_width, s_start) in ((0, (seeds[0], seeds[1])), (1, (seeds[2], seeds[3]))):
    length = shape[axis]
    start, width = _random_band(length, max_fraction, s_width, s_start)
    pos = tf.range(length)
    band = (pos >= start) & (pos < start + width)
    band = band[:, None, None] if axis == 0 else band[None, :, None]
    keep &= ~band
  return tf.where(keep, spec, tf.zeros_like(spec))
