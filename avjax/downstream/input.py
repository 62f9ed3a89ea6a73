"""tf.data inputs of the downstream datasets (UCF101, HMDB51, ESC-50) for fine-tuning.

The protocol (paper Sections 4.1 and 7.2) is avjax.downstream.config's, and views.py names
its views from the preprocessing ops pretraining uses (avjax.data.ops). `train_dataset` and
`test_batches` are tf.data pipelines over a prepared directory (downstream/prepare.py)
or, for UCF101, the TFDS `ucf101` builder (`source="tfds"`), yielding host-local numpy
batches for the fine-tuning task.
"""

import os

import tensorflow as tf

from avjax.data import example
from avjax.data import ops
from avjax.downstream import prepare
from avjax.downstream import views


def _check_config(c):
  ops.hide_gpus_from_tensorflow()  # a pipeline is about to be built
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


# --- Sources: a prepared directory or the TFDS builder.


def _records_info(c, split):
  manifest = prepare.load_prepared(c.data_dir)
  path = os.path.join(c.data_dir, prepare.MANIFEST)
  if manifest["dataset"] != c.dataset:
    raise ValueError(f"{path}: prepared for {manifest['dataset']!r}, config says {c.dataset!r}")
  if c.kind == "audio" and manifest["params"]["sample_rate"] != c.sample_rate:
    raise ValueError(f"{path}: audio at {manifest['params']['sample_rate']} Hz, config "
                     f"data.sample_rate is {c.sample_rate}")
  if str(split) not in manifest["splits"]:
    raise ValueError(f"{path}: no split {split}; available: "
                     f"{', '.join(sorted(manifest['splits']))}")
  return manifest, manifest["splits"][str(split)]


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
  key = "frames" if c.kind == "video" else "audio"

  def parse(serialized):
    ex = example.parse_snippet(serialized)
    return {"label": table.lookup(ex["title_id"]), "step": tf.constant(step, tf.float32),
            key: ex[key]}

  by_file = train and len(files) >= process_count
  ds = tf.data.Dataset.from_tensor_slices(files)
  if train:
    if by_file:  # each host reads its own files
      ds = ds.shard(process_count, process_index)
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    cycle = min(16, len(files))
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=cycle, deterministic=True,
                       num_parallel_calls=min(cycle, ops.parallel_calls(c.num_parallel)))
  else:
    ds = ds.flat_map(tf.data.TFRecordDataset)
  ds = ds.map(parse, num_parallel_calls=ops.parallel_calls(c.num_parallel))
  ds = ds.filter(lambda x: x["label"] >= 0)
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
      x = views.video_train_view(ex["frames"], ex["step"], rng, c)
    else:
      x = views.audio_train_view(ex["audio"], rng, c)
    return {c.kind: _output(x, c), "label": ex["label"]}

  ds = ds.map(augment, num_parallel_calls=ops.parallel_calls(c.num_parallel))
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(c.prefetch).with_options(ops.dataset_options())


def test_batches(c, split, *, batch_size, num_test, process_index=0, process_count=1):
  """Numpy batches {kind: views, "label", "mask"} of this host's test clips, each once:
  exactly `batch_size` clips, with a 0/1 "mask" for padding.

  Video views are [B, 30, num_frames, crop, crop, 3], audio [B, 10, mel_bins, frames, 1].
  Every host yields the same number of batches, ceil(ceil(num_test / hosts) / batch_size),
  so the jitted evaluation step runs in lockstep on all of them.
  """
  _check_config(c)
  ds = _source(c, split, "test", train=False, seed=0, process_index=process_index,
               process_count=process_count)

  def test_views(ex):
    if c.kind == "video":
      x = views.video_test_views(ex["frames"], ex["step"], c)
    else:
      x = views.audio_test_views(ex["audio"], c)
    return {c.kind: _output(x, c), "label": ex["label"]}

  ds = ds.map(test_views, num_parallel_calls=ops.parallel_calls(c.num_parallel))
  it = ds.batch(batch_size).prefetch(c.prefetch).with_options(
      ops.dataset_options()).as_numpy_iterator()
  num_batches = -(-(-(-num_test // process_count)) // batch_size)
  template = None
  for _ in range(num_batches):
    batch = next(it, None)
    if batch is None:
      if template is None:
        raise ValueError(f"split {split}: no test clips on host {process_index}")
      batch = {k: v[:0] for k, v in template.items()}
    template = batch
    yield ops.pad_batch(batch, batch_size)
  if next(it, None) is not None:
    raise ValueError(f"split {split}: more test clips than the expected {num_test}")

