"""TF ops of the pretraining input: snippet decoding, crops, colour jitter, log-mel.

`snippet_fn` turns a serialized snippet into model inputs: frames taken with a stride and
cropped (random in training, centre in evaluation) while decoding, colour jitter (Table 2),
normalization; log-mel audio with band dropout (Section 4.1). Its randomness is a pure
function of (seed, key), so a resumed run draws the same augmentations. `check_record`
says in words what is wrong with a record that fails to decode.
"""

import functools

import numpy as np
import tensorflow as tf

from avjax.data import audio
from avjax.data import example
from avjax.data import records


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


def check_record(serialized, title_id, snippet_index, params, crop_size):
  """Reasons why a serialized snippet is bad (empty list if it is fine); decodes eagerly."""
  try:
    ex = example.decode_snippet_numpy(serialized)
  except Exception as e:  # pylint: disable=broad-except
    return [f"not a snippet Example ({e})"]
  problems = []
  if ex["title_id"] != title_id or ex["snippet_index"] != snippet_index:
    problems.append(f"record holds title {ex['title_id']} snippet {ex['snippet_index']}")
  if len(ex["frames"]) != params["frames_per_snippet"]:
    problems.append(f"{len(ex['frames'])} frames, expected {params['frames_per_snippet']}")
  samples = records.samples_per_snippet(params)
  if len(ex["audio"]) != samples:
    problems.append(f"{len(ex['audio'])} audio samples, expected {samples}")
  shape0 = None
  for i, jpeg in enumerate(ex["frames"]):
    try:
      shape = tuple(tf.io.decode_jpeg(jpeg, channels=3).shape)
    except (tf.errors.OpError, ValueError) as e:
      problems.append(f"frame {i}: corrupt JPEG ({type(e).__name__})")
      continue
    shape0 = shape0 or shape
    if shape != shape0:
      problems.append(f"frame {i} is {shape[:2]}, frame 0 is {shape0[:2]}")
    elif min(shape[:2]) < crop_size:
      problems.append(f"frame {i} is {shape[:2]}, smaller than the {crop_size} crop")
  return problems


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


def color_jitter(video, sigma, seed):
  """Colour jitter of strength sigma (Table 2), the same factors for all frames.

  Args:
    video: [T, H, W, 3] float in [0, 1].
    sigma: float; 0 gives factors of exactly 1, the identity.
    seed: [2] stateless seed.
  """
  return apply_color_jitter(video, *jitter_factors(sigma, seed))


@functools.lru_cache(maxsize=None)
def _video_to_float_fn(mean, std, jitter):
  """uint8 [T, H, W, 3] -> normalized float32, jitter optional; one XLA-fused pass.

  Unfused, the broadcasts over the channel axis cost more CPU than the JPEG decoding.
  """
  scale = tf.constant(1.0 / np.asarray(std, np.float32))
  offset = tf.constant(-np.asarray(mean, np.float32) / np.asarray(std, np.float32))

  @tf.function(jit_compile=True)
  def convert(video, factors):
    x = tf.cast(video, tf.float32) * (1.0 / 255.0)
    if jitter:
      x = apply_color_jitter(x, factors[0], factors[1], factors[2])
    return x * scale + offset

  return convert


def _crop_offsets(height, width, size, train, seeds):
  """Top-left corner of the crop: random in training, the centre in evaluation."""
  if not train:
    return (height - size) // 2, (width - size) // 2
  oy = tf.random.stateless_uniform([], seeds[0], 0, height - size + 1, tf.int32)
  ox = tf.random.stateless_uniform([], seeds[1], 0, width - size + 1, tf.int32)
  return oy, ox


def _decode_crop(frames, size, short, train, seeds):
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


def snippet_fn(config, params, train):
  """Serialized snippet (+ ids and augmentation key) -> decoded, augmented tensors."""
  stored_frames = int(params["frames_per_snippet"])
  stride = stored_frames // config.num_frames
  samples = records.samples_per_snippet(params)
  size, short = int(config.crop_size), int(config.short_side)
  sigma = float(config.color_jitter)
  mask_fraction = float(config.audio_mask_fraction)
  to_float = _video_to_float_fn(tuple(config.video_mean), tuple(config.video_std),
                                train and sigma > 0)
  mel_kwargs = dict(sample_rate=config.sample_rate, n_fft=config.n_fft, hop=config.hop,
                    mel_bins=config.mel_bins, mel_lower_hz=config.mel_lower_hz,
                    mel_upper_hz=config.mel_upper_hz, log_floor=config.log_floor,
                    mean=config.audio_mean, std=config.audio_std)
  seed_base = tf.constant(int(config.seed), tf.int64)

  def fn(serialized, title_index, snippet_index, key):
    ex = example.parse_snippet(serialized)
    where = ["title", ex["title_id"], "snippet", ex["snippet_index"]]
    checks = [
        tf.debugging.Assert(tf.size(ex["frames"]) == stored_frames,
                            ["bad record:"] + where + ["frames:", tf.size(ex["frames"])]),
        tf.debugging.Assert(tf.size(ex["audio"]) == samples,
                            ["bad record:"] + where + ["audio samples:", tf.size(ex["audio"])]),
        tf.debugging.Assert(ex["snippet_index"] == tf.cast(snippet_index, tf.int64),
                            ["bad record:"] + where + ["expected snippet", snippet_index]),
    ]
    with tf.control_dependencies(checks):
      frames = tf.ensure_shape(ex["frames"], [stored_frames])
      pcm = tf.ensure_shape(ex["audio"], [samples])
    frames = tf.unstack(frames, num=stored_frames)[::stride]
    seeds = tf.random.experimental.stateless_split(tf.stack([seed_base, key]), num=4)
    video = _decode_crop(frames, size, short, train, seeds)
    video = tf.ensure_shape(video, [config.num_frames, size, size, 3])
    factors = (tf.stack(jitter_factors(sigma, seeds[2])) if train and sigma > 0
               else tf.ones([3]))
    video = to_float(video, factors)

    spec = audio.log_mel_spectrogram(pcm, **mel_kwargs)
    if train and mask_fraction > 0:
      spec = audio.band_dropout(spec, mask_fraction, seeds[3])
    return dict(video=video, audio=spec, title_index=title_index,
                snippet_index=snippet_index)

  return fn
