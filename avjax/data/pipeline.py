"""The tf.data input pipeline: hierarchical groups of snippets to host-local numpy batches.

Training (paper Sections 3 and 4.1):
  sampler groups ──Python generator: k records read by offset via the per-title index──▶
  tf.data (parse, decode + crop JPEGs, colour jitter, log-mel, band dropout; parallel,
  order-preserving) ──▶ batches of whole groups ──▶ prefetch ──▶ numpy dicts

Batch layout. Global batch s (of B = G * k snippets) holds the groups at positions
[start_group + s * G, start_group + (s + 1) * G) of the sampler stream, in order. Host p of
P reads only its contiguous share of G / P groups, and within the host each of its D local
devices gets a contiguous run of whole groups, so every device's shard holds whole groups
(B must be a multiple of k * P * D; `check_batch_layout` says which number does not
divide). The trainer puts the host batches together with
jax.make_array_from_process_local_data. The stream is a pure function of (seed, position),
and augmentation randomness is a pure function of (seed, position, slot): resuming after s
steps with start_group = s * G reproduces the same batches, bit for bit, on any number of
hosts. The trainer saves the step and derives the sampler position from it.

Memory. Records are read on demand by byte offset (random access, no scan) and nothing is
buffered per title: host memory is bounded by the prefetch depth, whatever the title
lengths, at about (prefetch + 2) host batches of decoded data plus the snippets in flight
in the parallel map. A decoded snippet is T*crop*crop*3*4 bytes of video (4.8 MB at
16x158x158) and mel_bins*frames*4 of audio (115 KB). Open record files and loaded offset
indices are kept in a small LRU cache (`open_files` titles).

Bad records (a corrupt JPEG, a wrong audio length or frame count) raise BadRecordError
naming the dataset, title and snippet. With `skip_bad_records` they are counted instead
(`iterator.num_skipped`) and every group that holds one is replaced by a fresh draw of the
sampler for the same position (`HierarchicalSampler.group(position, redraw)`), so batches
keep whole groups and stay a pure function of (seed, step) given the data. The bad record
is found when its batch fails; the pipeline then restarts at that batch.

Evaluation (`make_eval_iterator`): every snippet of the held-out titles exactly once, in
(title, snippet) order, centre crops, no augmentation; the last batch is padded and a
"mask" field marks real snippets.

TensorFlow only feeds data here; it is kept off GPUs, which belong to JAX.
"""

import atexit
import functools
import math
import weakref

import numpy as np
import tensorflow as tf
from absl import logging

from avjax.data import audio
from avjax.data import hide_gpus_from_tensorflow
from avjax.data import records
from avjax.data import sampling

hide_gpus_from_tensorflow()

KINDS = {"movie": ("movie",), "movies": ("movie",), "episode": ("episode",),
         "episodes": ("episode",), "both": ("movie", "episode")}
GENRE_MIX = ("natural", "uniform")


class BadRecordError(ValueError):
  """A snippet record that cannot be decoded or has the wrong shape."""


# ---------------------------------------------------------------------------
# Titles.


def _paths(dataset):
  if isinstance(dataset, str):
    dataset = [dataset]
  paths = [str(p) for p in (dataset or []) if str(p)]
  if not paths:
    raise ValueError("config.dataset is empty: give the dataset dir(s) written by "
                     "`python -m avjax.ingest`")
  return paths


def load_manifest(dataset):
  """Manifest of one dataset dir or the pooled titles of several.

  Each title entry gets a "dataset_dir" key. Pooled datasets must share the snippet
  format (fps, frames per snippet, sample rate) and have distinct title ids.
  """
  paths = _paths(dataset)
  params, titles, seen = None, [], {}
  for path in paths:
    manifest = records.load_manifest(path)
    p = manifest["params"]
    if params is None:
      params = dict(p)
    else:
      for key in ("fps", "frames_per_snippet", "sample_rate"):
        if p.get(key) != params.get(key):
          raise ValueError(f"{path}: {key}={p.get(key)!r} differs from {paths[0]} "
                           f"({params.get(key)!r}); pooled datasets need one snippet format")
    for entry in manifest["titles"]:
      if entry["id"] in seen:
        raise ValueError(f"title {entry['id']!r} is in both {seen[entry['id']]} and {path}")
      seen[entry["id"]] = path
      titles.append(dict(entry, dataset_dir=path))
  return dict(format_version=records.FORMAT_VERSION, params=params, titles=titles)


def _genre_set(genres):
  if genres is None:
    return None
  if isinstance(genres, str):
    genres = [g for g in genres.split(",") if g.strip()]
  return {g.strip().lower() for g in genres}


def select_titles(manifest, config, *, split=None, budget=None):
  """The title entries a run uses, in manifest order (deterministic per config.seed).

  Filters by split, kind ("movie", "episode", "both") and genre set (a title qualifies if
  any of its genres is in config.genres), then keeps config.title_budget titles if > 0:
  a uniform random subset ("natural" genre mix: genres as common as in the collection) or
  an even share per genre ("uniform": genres take turns picking one of their remaining
  titles at random; a genre that runs out drops out of the rotation).

  Args:
    manifest: from `load_manifest` (or records.load_manifest).
    config: the data config.
    split: overrides config.split.
    budget: overrides config.title_budget.
  """
  split = config.split if split is None else split
  budget = config.title_budget if budget is None else budget
  if config.kinds not in KINDS:
    raise ValueError(f"kinds={config.kinds!r}: expected one of {sorted(KINDS)}")
  if config.genre_mix not in GENRE_MIX:
    raise ValueError(f"genre_mix={config.genre_mix!r}: expected one of {GENRE_MIX}")
  kinds = KINDS[config.kinds]
  wanted = _genre_set(config.genres)
  eligible = [
      t for t in manifest["titles"]
      if t["split"] == split and t["kind"] in kinds
      and (wanted is None or wanted & {g.lower() for g in t["genres"]})
  ]
  if not eligible:
    raise ValueError(f"no titles with split={split!r}, kinds={config.kinds!r}, "
                     f"genres={config.genres!r} among {len(manifest['titles'])} titles")
  if not budget or budget == len(eligible):
    return eligible
  if budget > len(eligible):
    raise ValueError(f"title_budget={budget} but only {len(eligible)} titles have "
                     f"split={split!r}, kinds={config.kinds!r}, genres={config.genres!r}")
  rng = np.random.default_rng([int(config.seed), 0x7171E5])
  if config.genre_mix == "natural":
    chosen = set(rng.choice(len(eligible), size=budget, replace=False).tolist())
  else:
    names = sorted(wanted or {g.lower() for t in eligible for g in t["genres"]})
    queues = {}
    for g in names:
      members = [i for i, t in enumerate(eligible) if g in {x.lower() for x in t["genres"]}]
      queues[g] = list(rng.permutation(members))
    order = [names[i] for i in rng.permutation(len(names))]
    chosen = set()
    while len(chosen) < budget and order:
      for g in list(order):
        q = queues[g]
        while q and q[-1] in chosen:
          q.pop()
        if not q:
          order.remove(g)
          continue
        chosen.add(int(q.pop()))
        if len(chosen) == budget:
          break
    if len(chosen) < budget:
      raise ValueError(f"title_budget={budget}: only {len(chosen)} titles have a genre")
  return [t for i, t in enumerate(eligible) if i in chosen]


# ---------------------------------------------------------------------------
# Batch layout.


def check_batch_layout(global_batch_size, k, process_count=1, num_local_devices=1):
  """Validates that a global batch splits into whole groups per host and per device.

  Returns (groups per global batch G, groups per host, host batch size).
  """
  b, p, d = int(global_batch_size), int(process_count), int(num_local_devices)
  if b <= 0 or k <= 0 or p <= 0 or d <= 0:
    raise ValueError(f"need positive sizes, got global batch {b}, k={k}, {p} processes, "
                     f"{d} local devices")
  if b % k:
    raise ValueError(f"global batch size {b} is not a multiple of k={k}: a batch holds "
                     "whole groups of k snippets of one title (Section 3)")
  groups = b // k
  if groups % p:
    raise ValueError(f"the {groups} groups of a global batch ({b} / k={k}) do not split "
                     f"evenly over {p} processes")
  if (groups // p) % d:
    raise ValueError(f"the {groups // p} groups of a host batch ({b} / k={k} / {p} "
                     f"processes) do not split evenly over {d} local devices: each device's "
                     f"shard must hold whole groups, so the global batch must be a multiple "
                     f"of k * processes * devices = {k * p * d}")
  return groups, groups // p, b // p


def _process_defaults(process_index, process_count, num_local_devices):
  if None in (process_index, process_count, num_local_devices):
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    num_local_devices = (jax.local_device_count() if num_local_devices is None
                         else num_local_devices)
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} not in [0, {process_count})")
  return int(process_index), int(process_count), int(num_local_devices)


# ---------------------------------------------------------------------------
# Records.


class _RecordSource:
  """Reads snippet m of selected title n: one bounded SnippetReader per dataset dir."""

  def __init__(self, titles, max_open):
    self.titles = titles
    self._readers = {}
    for entry in titles:
      base = entry["dataset_dir"]
      if base not in self._readers:
        manifest = dict(titles=[t for t in titles if t["dataset_dir"] == base])
        self._readers[base] = records.SnippetReader(base, manifest=manifest, max_open=max_open)

  def read(self, n, m):
    entry = self.titles[n]
    return self._readers[entry["dataset_dir"]].read(entry["id"], m)

  def close(self):
    for reader in self._readers.values():
      reader.close()


def _check_format(config, params):
  """Checks the config against the stored snippet format; returns the frame stride."""
  stored = int(params["frames_per_snippet"])
  if config.num_frames <= 0 or stored % config.num_frames:
    raise ValueError(f"num_frames={config.num_frames} must divide the {stored} frames "
                     "stored per snippet (frames are taken with a stride)")
  if int(params["sample_rate"]) != config.sample_rate:
    raise ValueError(f"sample_rate={config.sample_rate} but the dataset stores "
                     f"{params['sample_rate']} Hz audio")
  if config.crop_size > config.short_side:
    raise ValueError(f"crop_size={config.crop_size} > short_side={config.short_side}")
  if not 0 <= config.audio_mask_fraction < 1:
    raise ValueError(f"audio_mask_fraction={config.audio_mask_fraction}: expected [0, 1)")
  if config.color_jitter < 0:
    raise ValueError(f"color_jitter={config.color_jitter}: expected >= 0")
  return stored // config.num_frames


def check_record(serialized, title_id, snippet_index, params, crop_size):
  """Reasons why a serialized snippet is bad (empty list if it is fine); decodes eagerly."""
  try:
    ex = records.decode_snippet_numpy(serialized)
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


# ---------------------------------------------------------------------------
# Decoding and augmentation (TF graph).


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


def _snippet_fn(config, params, train):
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

  def offsets(height, width, seeds):
    if not train:  # centre crop
      return (height - size) // 2, (width - size) // 2
    oy = tf.random.stateless_uniform([], seeds[0], 0, height - size + 1, tf.int32)
    ox = tf.random.stateless_uniform([], seeds[1], 0, width - size + 1, tf.int32)
    return oy, ox

  def fn(serialized, title_index, snippet_index, key):
    ex = records.parse_snippet(serialized)
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
    shape = tf.image.extract_jpeg_shape(frames[0])
    height, width = shape[0], shape[1]

    def crop_while_decoding():  # stored at the wanted short side: decode only the crop
      oy, ox = offsets(height, width, seeds)
      window = tf.stack([oy, ox, size, size])
      return tf.stack([tf.io.decode_and_crop_jpeg(f, window, channels=3) for f in frames])

    def resize_then_crop():  # stored at another size: shorter side to `short` first
      scale = short / tf.cast(tf.minimum(height, width), tf.float32)
      new_h = tf.where(height <= width, short,
                       tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
      new_w = tf.where(height <= width,
                       tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32), short)
      video = tf.stack([tf.io.decode_jpeg(f, channels=3) for f in frames])
      video = tf.image.resize(video, tf.stack([new_h, new_w]), antialias=True)
      oy, ox = offsets(new_h, new_w, seeds)
      video = tf.clip_by_value(tf.round(video[:, oy:oy + size, ox:ox + size, :]), 0.0, 255.0)
      return tf.cast(video, tf.uint8)

    video = tf.cond(tf.minimum(height, width) == short, crop_while_decoding, resize_then_crop)
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


def _options():
  options = tf.data.Options()
  options.deterministic = True  # batches must keep the groups' order
  options.autotune.enabled = True
  # Parallelism comes from decoding many snippets at once; threads inside one op would
  # only oversubscribe the cores.
  options.threading.max_intra_op_parallelism = 1
  return options


# ---------------------------------------------------------------------------
# Iterators.


_LIVE = weakref.WeakSet()


@atexit.register
def _close_live_iterators():
  # Ends generator-backed tf.data iterators while Python can still run their cleanup.
  for it in list(_LIVE):
    it.close()


class _RestartingIterator:
  """Numpy batches from a tf.data pipeline that can be rebuilt at any batch number.

  A bad record makes its batch fail; the iterator finds it by checking that batch's
  snippets, then raises BadRecordError or (skip_bad_records) notes it and rebuilds the
  pipeline at the same batch, which then avoids it.
  """

  def __init__(self, config, titles, params):
    self.config = config
    self.titles = titles
    self.title_ids = [t["id"] for t in titles]
    self.params = params
    self.skipped = set()  # (title index, snippet index) of bad records
    self._source = _RecordSource(titles, config.open_files)
    self._snippet_fn = None
    self._step = 0
    self._it = None
    _LIVE.add(self)

  @property
  def num_skipped(self):
    return len(self.skipped)

  def __iter__(self):
    return self

  def __next__(self):
    while True:
      if self._exhausted(self._step):
        self.close()
        raise StopIteration
      if self._it is None:
        self._it = self._build(self._step).as_numpy_iterator()
      try:
        batch = next(self._it)
      except StopIteration:
        batch = None
      except tf.errors.OpError as e:
        self._it = None
        self._recover(e)
        continue
      out = self._finish(batch)
      self._step += 1
      return out

  def close(self):
    self._it = None
    self._source.close()

  def __del__(self):
    # tf.data may keep a dropped pipeline's generator (and so the source) alive for a
    # while: close the files now so that discarded iterators never pile up open files.
    source = getattr(self, "_source", None)
    if source is not None:
      source.close()

  def _recover(self, error):
    bad = []
    for n, m in self._snippets_of_batch(self._step):
      serialized = self._source.read(n, m)
      problems = check_record(serialized, self.title_ids[n], m, self.params,
                              self.config.crop_size)
      if problems:
        bad.append((n, m, problems))
    if not bad:
      raise error
    where = "; ".join(f"{self.titles[n]['dataset_dir']}: title {self.title_ids[n]} snippet "
                      f"{m}: {', '.join(p)}" for n, m, p in bad)
    if not self.config.skip_bad_records:
      raise BadRecordError(f"bad record(s): {where} (set skip_bad_records to skip them)")
    new = {(n, m) for n, m, _ in bad} - self.skipped
    if not new:
      raise error
    self.skipped |= new
    logging.warning("skipping bad record(s) (%d so far): %s", len(self.skipped), where)

  def _dataset(self, generator, signature, batch_size, drop_remainder, train):
    if self._snippet_fn is None:
      self._snippet_fn = _snippet_fn(self.config, self.params, train)
    num_parallel = self.config.num_parallel
    num_parallel = tf.data.AUTOTUNE if num_parallel in (None, -1) else int(num_parallel)
    ds = tf.data.Dataset.from_generator(generator, output_signature=signature).unbatch()
    ds = ds.map(self._snippet_fn, num_parallel_calls=num_parallel, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(self.config.prefetch).with_options(_options())

  # Subclasses.
  def _exhausted(self, step):
    return False

  def _build(self, step):
    raise NotImplementedError

  def _snippets_of_batch(self, step):
    raise NotImplementedError

  def _finish(self, batch):
    return batch


class TrainIterator(_RestartingIterator):
  """Endless host-local training batches; see the module docstring for the layout.

  Batch dict: "video" float32 [b, T, crop, crop, 3], "audio" float32 [b, mel_bins, frames,
  1], "title_index" int32 [b] (into `title_ids`), "snippet_index" int32 [b].
  """

  def __init__(self, config, titles, params, *, global_batch_size, start_group,
               process_index, process_count, num_local_devices):
    super().__init__(config, titles, params)
    self.k = int(config.k)
    self.global_batch_size = int(global_batch_size)
    self.groups_per_batch, self.groups_per_host, self.batch_size = check_batch_layout(
        global_batch_size, self.k, process_count, num_local_devices)
    self.process_index, self.process_count = process_index, process_count
    self.start_group = int(start_group)
    if self.start_group < 0:
      raise ValueError(f"start_group={start_group}: must be >= 0")
    self.sampler = sampling.HierarchicalSampler(
        [t["num_snippets"] for t in titles], self.k, config.w,
        seed=int(config.seed), title_weights=config.title_weights)
    self.snippets_per_epoch = self.sampler.snippets_per_epoch
    self.steps_per_epoch = self.snippets_per_epoch // self.global_batch_size
    self._layout = (self.start_group, self.groups_per_batch,
                    process_index * self.groups_per_host, self.groups_per_host)

  @property
  def next_group(self):
    """Sampler position of the first group of the next global batch."""
    return self.start_group + self._step * self.groups_per_batch

  def _snippets_of_batch(self, step):
    out = []
    for pos in _positions(self._layout, step):
      n, idx = _draw_group(self.sampler, self.skipped, pos)
      out += [(n, int(m)) for m in idx]
    return out

  def _build(self, step):
    # The generator holds plain objects, not the iterator, so that a dropped iterator is
    # freed (with its files) without an explicit close().
    k, layout, sampler, skipped, source = (self.k, self._layout, self.sampler, self.skipped,
                                           self._source)

    def generate():
      s = step
      while True:
        for pos in _positions(layout, s):
          n, idx = _draw_group(sampler, skipped, pos)
          data = np.array([source.read(n, int(m)) for m in idx], dtype=object)
          keys = pos * k + np.arange(k, dtype=np.int64)  # augmentation seeds
          yield data, np.full(k, n, np.int32), idx.astype(np.int32), keys
        s += 1

    signature = (tf.TensorSpec([k], tf.string), tf.TensorSpec([k], tf.int32),
                 tf.TensorSpec([k], tf.int32), tf.TensorSpec([k], tf.int64))
    return self._dataset(generate, signature, self.batch_size, True, train=True)


def _positions(layout, step):
  """Sampler positions of this host's groups in batch `step`."""
  start, groups_per_batch, host_offset, groups_per_host = layout
  first = start + step * groups_per_batch + host_offset
  return range(first, first + groups_per_host)


def _draw_group(sampler, skipped, position):
  """The sampler's group at `position`, redrawn while it holds a skipped record."""
  for redraw in range(1000):
    n, idx = sampler.group(position, redraw)
    if not skipped or not any((n, int(m)) in skipped for m in idx):
      return n, idx
  raise BadRecordError(f"group {position}: 1000 draws all hold a skipped record")


class EvalIterator(_RestartingIterator):
  """Every snippet of the selected titles once, in (title, snippet) order; then stops.

  Host p of P takes a contiguous share of the snippets; all hosts yield `num_batches`
  batches of `batch_size` (padded with zeros; "mask" marks real snippets). Batch dict as
  TrainIterator's plus "mask" bool [b]; `title_ids[title_index]` names the title.
  """

  def __init__(self, config, titles, params, *, global_batch_size, process_index,
               process_count, num_local_devices):
    super().__init__(config, titles, params)
    self.global_batch_size = int(global_batch_size)
    if self.global_batch_size % (process_count * num_local_devices):
      raise ValueError(f"eval batch size {global_batch_size} does not split evenly over "
                       f"{process_count} processes x {num_local_devices} local devices")
    self.batch_size = self.global_batch_size // process_count
    items = [(n, m) for n, t in enumerate(titles) for m in range(t["num_snippets"])]
    self.num_snippets = len(items)
    shares = np.array_split(np.arange(len(items)), process_count)
    self._items = [items[i] for i in shares[process_index]]
    self.num_batches = max(math.ceil(len(s) / self.batch_size) for s in shares)

  def _exhausted(self, step):
    return step >= self.num_batches

  def _live_items(self):
    return [x for x in self._items if x not in self.skipped]

  def _snippets_of_batch(self, step):
    return self._live_items()[step * self.batch_size:(step + 1) * self.batch_size]

  def _build(self, step):
    items = self._live_items()[step * self.batch_size:]
    source = self._source

    def generate():
      for n, m in items:
        yield (np.array([source.read(n, m)], dtype=object), np.array([n], np.int32),
               np.array([m], np.int32), np.zeros(1, np.int64))

    signature = (tf.TensorSpec([1], tf.string), tf.TensorSpec([1], tf.int32),
                 tf.TensorSpec([1], tf.int32), tf.TensorSpec([1], tf.int64))
    return self._dataset(generate, signature, self.batch_size, False, train=False)

  def _finish(self, batch):
    b = self.batch_size
    if batch is None:
      batch = self._empty()
    real = len(batch["title_index"])
    out = {}
    for key, value in batch.items():
      pad = np.zeros((b - real,) + value.shape[1:], value.dtype)
      out[key] = np.concatenate([value, pad]) if real < b else value
    out["mask"] = np.arange(b) < real
    return out

  def _empty(self):
    c = self.config
    frames = audio.num_frames(records.samples_per_snippet(self.params), c.hop)
    return dict(video=np.zeros((0, c.num_frames, c.crop_size, c.crop_size, 3), np.float32),
                audio=np.zeros((0, c.mel_bins, frames, 1), np.float32),
                title_index=np.zeros((0,), np.int32), snippet_index=np.zeros((0,), np.int32))


def make_train_iterator(config, *, global_batch_size, start_group=0, process_index=None,
                        process_count=None, num_local_devices=None):
  """Host-local training batches of the hierarchical policy (module docstring: layout).

  Args:
    config: the data config (`default_config()`).
    global_batch_size: B, over all hosts; a multiple of k * processes * local devices.
    start_group: sampler position of the first group; to resume after s steps pass
      s * B / k (the trainer saves the step and derives this).
    process_index, process_count, num_local_devices: default to JAX's.
  Returns:
    A TrainIterator: yields dicts "video" float32 [b, T, crop, crop, 3], "audio" float32
    [b, mel_bins, frames, 1], "title_index" int32 [b], "snippet_index" int32 [b] with
    b = B / process_count; attributes title_ids, sampler, snippets_per_epoch,
    steps_per_epoch, groups_per_batch, next_group, num_skipped.
  """
  process_index, process_count, num_local_devices = _process_defaults(
      process_index, process_count, num_local_devices)
  manifest = load_manifest(config.dataset)
  _check_format(config, manifest["params"])
  titles = select_titles(manifest, config)
  return TrainIterator(config, titles, manifest["params"], global_batch_size=global_batch_size,
                       start_group=start_group, process_index=process_index,
                       process_count=process_count, num_local_devices=num_local_devices)


def make_eval_iterator(config, *, batch_size, split=None, process_index=None,
                       process_count=None, num_local_devices=None):
  """Every snippet of the held-out titles once: centre crops, no augmentation.

  Titles are those of `split` (default config.eval_split) that pass the kind and genre
  filters; the title budget does not apply. `batch_size` is global; each host gets
  batch_size / process_count rows per batch, the last ones padded ("mask" False).
  """
  process_index, process_count, num_local_devices = _process_defaults(
      process_index, process_count, num_local_devices)
  manifest = load_manifest(config.dataset)
  _check_format(config, manifest["params"])
  split = config.eval_split if split is None else split
  titles = select_titles(manifest, config, split=split, budget=0)
  return EvalIterator(config, titles, manifest["params"], global_batch_size=batch_size,
                      process_index=process_index, process_count=process_count,
                      num_local_devices=num_local_devices)
