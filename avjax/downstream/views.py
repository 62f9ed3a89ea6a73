"""The downstream inputs' views of a clip (Section 4.1), named from avjax.data.ops (the
pretraining's ops): scale jitter and crop in one resample, normalization as in pretraining."""

import tensorflow as tf

from avjax.data import ops


def video_train_view(frames, step, seed, c):
  """One training clip: [num_frames, crop, crop, 3] float32, normalized.

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
  images = ops.decode_frames(tf.gather(frames, ops.clip_indices(start, c.num_frames, step,
                                                                length)))
  video = ops.scale_jitter_crop(images, c.scale_min, c.scale_max, c.crop_size, seeds[1:4])
  if c.flip:
    video = ops.random_flip(video, seeds[4])
  factors = tf.stack(ops.jitter_factors(c.color_jitter, seeds[5])) if c.color_jitter else None
  return ops.video_to_float(video, c.video_mean, c.video_std, factors)


def video_test_views(frames, step, c):
  """The test views of a clip: [test_clips * test_crops, num_frames, crop, crop, 3] float32,
  normalized.

  Clip starts are uniformly spaced from the first to the last position where a whole
  clip fits; each clip is cropped left, center and right (ops.three_crops). View v is clip
  v // test_crops, crop v % test_crops.
  """
  length = tf.shape(frames)[0]
  step = tf.cast(step, tf.float32)
  last = tf.maximum(tf.cast(length, tf.float32) - (c.num_frames - 1) * step - 1.0, 0.0)
  starts = tf.linspace(0.0, last, c.test_clips)
  idx = ops.clip_indices(starts, c.num_frames, step, length)  # [clips, num_frames]
  images = ops.decode_frames(frames)  # every frame once; the views share them
  crops = ops.three_crops(images, c.test_short_side, c.crop_size, c.test_crops)
  views = tf.gather(crops, idx, axis=1)  # [crops, clips, num_frames, ...]
  views = tf.transpose(views, [1, 0, 2, 3, 4, 5])
  views = tf.reshape(views, [c.test_clips * c.test_crops, c.num_frames, c.crop_size,
                             c.crop_size, 3])
  return ops.video_to_float(views, c.video_mean, c.video_std)


def _window(c):
  return int(round(c.clip_seconds * c.sample_rate))


def audio_train_view(pcm, seed, c):
  """A random 3-s clip as a masked log-mel spectrogram [mel_bins, frames, 1]."""
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
  spec = ops.log_mel(ops.random_clip(pcm, _window(c), seeds[0]), c)
  return ops.time_frequency_mask(spec, c.audio_mask_fraction, seeds[1])


def audio_test_views(pcm, c):
  """10 uniformly spaced 3-s clips as log-mel spectrograms [test_clips, mel_bins, frames, 1]."""
  return ops.log_mel(ops.even_clips(pcm, _window(c), c.test_clips), c)
