"""tf.data inputs of the downstream datasets (UCF101, HMDB51, ESC-50) for fine-tuning.

Evaluation follows paper Section 4.1 ("Downstream Evaluation") and Section 7.2:
  video (UCF101, HMDB51, encoder f): train on 32-frame clips at 10 fps from a random
    position, shorter side jittered in [181, 226], random 158x158 crop, horizontal flip,
    color jitter; test on 10 uniformly spaced clips x 3 crops (left, center, right).
  audio (ESC-50, encoder g): train on random 3-s clips with time and frequency masking of
    up to 50% of each axis (no crop, no scale jitter); test on 10 uniformly spaced clips.

`default_config` holds that protocol. `train_dataset` and `test_batches` are tf.data
pipelines over a prepared directory (downstream_prepare) or, for UCF101, the TFDS `ucf101`
builder (`source="tfds"`), yielding host-local numpy batches for the fine-tuning trainer.
"""

import os

import ml_collections
import numpy as np
import tensorflow as tf

from avjax.data import audio as audio_lib
from avjax.data import config as data_config
from avjax.data import downstream
from avjax.data import downstream_prepare
from avjax.data import pipeline
from avjax.data import records


def default_config(dataset):
  """Input config of `dataset` with the paper's protocol (Sections 4.1, 7.2)."""
  if dataset not in downstream.DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(downstream.DATASETS)}")
  c = ml_collections.ConfigDict()
  c.dataset = dataset
  c.kind = downstream.KINDS[dataset]
  c.source = "records"      # "records": a prepared directory; "tfds": the TFDS builder
  c.data_dir = ""           # the prepared directory, or the TFDS data_dir
  c.tfds_config = ""        # TFDS builder config; "" = f"ucf101_{split}"
  c.seed = 0
  # Video: 32 frames at 10 fps, shorter side jittered in [181, 226], random 158 crop,
  # flip, color jitter (Section 4.1).
  c.num_frames = 32
  c.fps = 10.0
  c.scale_min, c.scale_max = 181, 226
  c.crop_size = 158
  c.flip = True
  c.color_jitter = 0.4      # sigma of pipeline.color_jitter (brightness, contrast, saturation)
  # Test: 10 uniformly spaced clips x 3 crops (left, center, right) = 30 views. The
  # shorter side is resized to test_short_side (the low end of the training jitter).
  c.test_clips = 10
  c.test_crops = 3
  c.test_short_side = 181
  # Video normalization, (x - mean) / std on [0, 1] values: the pretraining pipeline's.
  c.video_mean = data_config.VIDEO_MEAN
  c.video_std = data_config.VIDEO_STD
  # Audio: random 3-s clips, log-mel (avjax.data.audio), time and frequency masks of up
  # to 50% of each axis, no crop or scale jitter (Section 4.1); test: 10 clips.
  c.clip_seconds = 3.0
  c.sample_rate = audio_lib.SAMPLE_RATE
  c.audio_mask_fraction = 0.5
  # I/O.
  c.shuffle_buffer = 512
  c.prefetch = 2
  c.num_parallel = -1  # -1: tf.data.AUTOTUNE
  c.dtype = "float32"        # of the model input arrays; "bfloat16" halves host->device
  return c


def _check_config(c):
  if c.kind == "video":
    if not 0 < c.crop_size <= min(c.scale_min, c.test_short_side):
      raise ValueError(f"data.crop_size {c.crop_size} must be <= data.scale_min "
                       f"{c.scale_min} and data.test_short_side {c.test_short_side}")
    if c.scale_min > c.scale_max:
      raise ValueError(f"data.scale_min {c.scale_min} > data.scale_max {c.scale_max}")
    if c.test_crops not in (1, 3):
      raise ValueError(f"data.test_crops must be 1 (center) or 3 (left, center, right), "
                       f"got {c.test_crops}")
  if c.source not in ("records", "tfds"):
    raise ValueError(f"data.source {c.source!r}: expected 'records' or 'tfds'")
  if c.source == "tfds" and c.dataset != "ucf101":
    raise ValueError(f"data.source='tfds' exists for ucf101 only, not {c.dataset}")


def views_per_clip(c):
  """Test views per clip: 30 for video (10 clips x 3 crops), 10 for audio."""
  return c.test_clips * (c.test_crops if c.kind == "video" else 1)


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
    video = pipeline.color_jitter(video, c.color_jitter, seeds[5])
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
  spec = audio_lib.log_mel_spectrogram(pcm[start:start + size], sample_rate=c.sample_rate)
  return time_frequency_mask(spec, c.audio_mask_fraction, seeds[1])


def audio_test_views(pcm, c):
  """10 uniformly spaced 3-s clips as log-mel spectrograms [test_clips, mel_bins, frames, 1]."""
  size = _window(c)
  pcm = _fit(pcm, size)
  last = tf.cast(tf.shape(pcm)[0] - size, tf.float32)
  starts = tf.cast(tf.round(tf.linspace(0.0, last, c.test_clips)), tf.int32)
  clips = tf.gather(pcm, starts[:, None] + tf.range(size)[None, :])
  return audio_lib.log_mel_spectrogram(clips, sample_rate=c.sample_rate)


# --- Sources: a prepared directory or the TFDS builder.


def _split_key(split, available, where):
  key = str(split)
  if key not in available:
    raise ValueError(f"{where}: no split {split}; available: {', '.join(sorted(available))}")
  return key


def _records_info(c, split):
  manifest = downstream_prepare.load_manifest(c.data_dir)
  path = os.path.join(c.data_dir, downstream_prepare.MANIFEST)
  if manifest["dataset"] != c.dataset:
    raise ValueError(f"{path}: prepared for {manifest['dataset']!r}, config says {c.dataset!r}")
  if c.kind == "audio" and manifest["params"]["sample_rate"] != c.sample_rate:
    raise ValueError(f"{path}: audio at {manifest['params']['sample_rate']} Hz, config "
                     f"data.sample_rate is {c.sample_rate}")
  key = _split_key(split, manifest["splits"], path)
  return manifest, manifest["splits"][key]


def _tfds_builder(c, split):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = c.tfds_config or f"ucf101_{split}"
  return tfds.builder(f"ucf101/{name}", data_dir=c.data_dir or None)


def describe(c, split):
  """dict(classes, num_classes, num_train, num_test) of `split` of the configured source."""
  _check_config(c)
  if c.source == "tfds":
    builder = _tfds_builder(c, split)
    splits = builder.info.splits
    if "train" not in splits or "test" not in splits:
      raise FileNotFoundError(
          f"TFDS {builder.info.full_name} is not generated in {builder.data_dir_root}: run "
          f"`tfds build ucf101 --config={builder.builder_config.name} --data_dir=...` (it "
          "downloads UCF101) or prepare the files with python -m avjax.prepare_downstream")
    label = builder.info.features["label"]
    return dict(classes=list(label.names), num_classes=label.num_classes,
                num_train=builder.info.splits["train"].num_examples,
                num_test=builder.info.splits["test"].num_examples)
  manifest, clips = _records_info(c, split)
  return dict(classes=list(manifest["classes"]), num_classes=len(manifest["classes"]),
              num_train=len(clips["train"]), num_test=len(clips["test"]))


def _source(c, split, subset, *, train, seed, process_index, process_count):
  """Clips of `subset` ("train"|"test") as {"frames"|"audio", "step", "label"} elements.

  Train: an endless stream, shuffled across files; test: every clip once, in a fixed
  order, clip i read by host i % process_count.
  """
  if c.source == "tfds":
    return _tfds_source(c, split, subset, train=train, seed=seed,
                        process_index=process_index, process_count=process_count)
  manifest, clips = _records_info(c, split)
  ids = list(clips[subset])
  if not ids:
    raise ValueError(f"{c.data_dir}: split {split} has no {subset} clips")
  labels = {x["id"]: x["label"] for x in manifest["clips"]}
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.constant(
          [labels[i] for i in ids], tf.int32)), default_value=-1)
  files = [os.path.join(c.data_dir, s["records"]) for s in manifest["shards"] if s["num_clips"]]
  step = float(manifest["params"]["fps"]) / c.fps

  def parse(serialized):
    ex = records.parse_snippet(serialized)
    out = {"label": table.lookup(ex["title_id"]), "step": tf.constant(step, tf.float32)}
    if c.kind == "video":
      out["frames"] = ex["frames"]
    else:
      out["audio"] = ex["audio"]
    return out

  by_file = train and len(files) >= process_count
  ds = tf.data.Dataset.from_tensor_slices(files)
  if train:
    if by_file:  # each host reads its own files
      ds = ds.shard(process_count, process_index)
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(16, len(files)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  else:
    ds = ds.flat_map(tf.data.TFRecordDataset)
  ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).filter(lambda x: x["label"] >= 0)
  if not by_file:
    ds = ds.shard(process_count, process_index)
  return ds


def _tfds_source(c, split, subset, *, train, seed, process_index, process_count):
  """UCF101 from the TFDS builder (frames at 25 fps, JPEG; decoded only where sampled)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _tfds_builder(c, split)
  name = tfds.even_splits(subset, n=process_count, drop_remainder=False)[process_index]
  ds = builder.as_dataset(
      split=name, shuffle_files=train, decoders={"video": tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=seed))
  step = TFDS_UCF101_FPS / c.fps
  ds = ds.map(lambda ex: {"frames": ex["video"], "label": tf.cast(ex["label"], tf.int32),
                          "step": tf.constant(step, tf.float32)})
  return ds.repeat() if train else ds


# UCF101 is recorded at 25 fps and the TFDS builder keeps every frame.
TFDS_UCF101_FPS = 25.0


def _output(x, c):
  return tf.cast(x, tf.bfloat16) if c.dtype == "bfloat16" else tf.cast(x, tf.float32)


def train_dataset(c, split, *, batch_size, seed=None, process_index=0, process_count=1):
  """Endless batches {kind: inputs, "label"} of this host's share (`batch_size` per host).

  Video inputs are [B, num_frames, crop, crop, 3], audio [B, mel_bins, frames, 1].
  `seed` (default c.seed) fixes the order and augmentations; a resumed run passes a new one.
  """
  _check_config(c)
  seed = c.seed if seed is None else int(seed)
  seed = seed * 1000 + process_index
  ds = _source(c, split, "train", train=True, seed=seed, process_index=process_index,
               process_count=process_count)
  ds = ds.shuffle(c.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))

  def augment(ex, rng):
    if c.kind == "video":
      x = normalize_video(video_train_view(ex["frames"], ex["step"], rng, c), c)
    else:
      x = audio_train_view(ex["audio"], rng, c)
    return {c.kind: _output(x, c), "label": ex["label"]}

  ds = ds.map(augment, num_parallel_calls=_calls(c))
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(c.prefetch)


def _calls(c):
  return tf.data.AUTOTUNE if c.num_parallel in (-1, None) else int(c.num_parallel)


def test_dataset(c, split, *, batch_size, process_index=0, process_count=1):
  """Batches {kind: views, "label"} of this host's test clips, each once (last batch short).

  Video views are [B, 30, num_frames, crop, crop, 3], audio [B, 10, mel_bins, frames, 1].
  """
  _check_config(c)
  ds = _source(c, split, "test", train=False, seed=0, process_index=process_index,
               process_count=process_count)

  def views(ex):
    if c.kind == "video":
      x = normalize_video(video_test_views(ex["frames"], ex["step"], c), c)
    else:
      x = audio_test_views(ex["audio"], c)
    return {c.kind: _output(x, c), "label": ex["label"]}

  ds = ds.map(views, num_parallel_calls=_calls(c))
  return ds.batch(batch_size).prefetch(c.prefetch)


def test_batches(c, split, *, batch_size, num_test, process_index=0, process_count=1):
  """Numpy test batches of exactly `batch_size` clips with a 0/1 "mask" for padding.

  Every host yields the same number of batches, ceil(ceil(num_test / hosts) / batch_size),
  so the jitted evaluation step runs in lockstep on all of them.
  """
  num_batches = -(-(-(-num_test // process_count)) // batch_size)
  it = test_dataset(c, split, batch_size=batch_size, process_index=process_index,
                    process_count=process_count).as_numpy_iterator()
  template = None
  for _ in range(num_batches):
    batch = next(it, None)
    if batch is None:
      if template is None:
        raise ValueError(f"split {split}: no test clips on host {process_index}")
      batch = {k: v[:0] for k, v in template.items()}
    template = batch
    n = len(batch["label"])
    pad = batch_size - n
    out = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) if pad else v
           for k, v in batch.items()}
    out["mask"] = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    yield out
  if next(it, None) is not None:
    raise ValueError(f"split {split}: more test clips than the expected {num_test}")
