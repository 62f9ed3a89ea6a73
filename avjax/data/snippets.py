"""Snippet records -> the pretraining model's inputs, named from avjax.data.ops.

`snippet_fn` turns a serialized snippet into model inputs: frames taken with a stride and
cropped (random in training, centre in evaluation) while decoding, colour jitter (Table 2),
normalization; log-mel audio with band dropout (Section 4.1). Its randomness is a pure
function of (seed, key), so a resumed run draws the same augmentations. `check_record`
says in words what is wrong with a record that fails to decode.
"""

import tensorflow as tf

from avjax.data import example
from avjax.data import ops
from avjax.data import records


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


def snippet_fn(config, params, train):
  """Serialized snippet (+ ids and augmentation key) -> decoded, augmented tensors."""
  stored_frames = int(params["frames_per_snippet"])
  stride = stored_frames // config.num_frames
  samples = records.samples_per_snippet(params)
  size, short = int(config.crop_size), int(config.short_side)
  sigma = float(config.color_jitter)
  mask_fraction = float(config.audio_mask_fraction)
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
    video = ops.decode_crop(frames, size, short, train, seeds)
    video = tf.ensure_shape(video, [config.num_frames, size, size, 3])
    factors = (tf.stack(ops.jitter_factors(sigma, seeds[2])) if train and sigma > 0
               else None)
    video = ops.video_to_float(video, config.video_mean, config.video_std, factors)

    spec = ops.log_mel(pcm, config)
    if train and mask_fraction > 0:
      spec = ops.band_dropout(spec, mask_fraction, seeds[3])
    return dict(video=video, audio=spec, title_index=title_index,
                snippet_index=snippet_index)

  return fn
