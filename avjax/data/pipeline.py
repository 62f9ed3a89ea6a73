"""The tf.data input pipeline: hierarchical groups of snippets to host-local numpy batches.

Training (paper Sections 3 and 4.1):
  sampler groups ──Python generator: k records read by offset via the per-title index──▶
  tf.data (parse, decode + crop JPEGs, colour jitter, log-mel, band dropout; parallel,
  order-preserving) ──▶ batches of whole groups ──▶ prefetch ──▶ numpy dicts

Batch layout (avjax.data.batch_layout). Global batch s (of B = G * k snippets) holds the
G groups of the sampler's batch s (positions [s G, (s + 1) G) of its stream), in order,
with no title (k = 1: no snippet) twice; every host draws the batch's list of groups
(cheap: no data is read) and reads only its share, and each device's shard holds whole
groups. The trainer puts the host batches together with
jax.make_array_from_process_local_data. The stream is a pure function of (seed, batch), and
augmentation randomness is a pure function of (seed, position, slot): the iterator of a run
resumed after s steps (`start_step=s`) reproduces the same batches, bit for bit, on any
number of hosts. The iterator owns the sampler position (`sampler_position(step)`); the
trainer saves it with each checkpoint.

Memory. Records are read on demand by byte offset (random access, no scan) and nothing is
buffered per title: host memory is bounded by the prefetch depth, whatever the title
lengths, at about (prefetch + 2) host batches of decoded data plus the snippets in flight
in the parallel map. A decoded snippet is T*crop*crop*3*4 bytes of video (4.8 MB at
16x158x158) and mel_bins*frames*4 of audio (115 KB). Open record files and loaded offset
indices are kept in a small LRU cache (`open_files` titles).

Bad records (a CRC32C mismatch of the TFRecord framing, i.e. damaged bytes; a corrupt JPEG;
a wrong audio length or frame count) raise BadRecordError naming the dataset, title and
snippet. Every record read is CRC-checked (`verify_records`, on by default; the cost is in
docs/benchmarks.md). With `skip_bad_records` they are counted instead
(`iterator.num_skipped`) and every group that holds one is replaced by a fresh draw of the
sampler for the same place in the batch (`HierarchicalSampler.batch(b, bad)`), so batches
keep whole groups of distinct titles and stay a pure function of (seed, step) given the
data. The bad record is found when its batch fails; the pipeline then restarts at that batch.

Before the first batch, every selected title's files are checked (stat + index: records and
index exist, the index ends where the records file ends; records.title_problem), so a
truncated file or a manifest naming a missing title stops the run at once with the list
(titles.BadDatasetError), or, with `skip_bad_records`, those titles are left out with a warning.

Evaluation (`make_eval_iterator`): every snippet of the held-out titles exactly once, in
(title, snippet) order, centre crops, no augmentation; the last batch is padded and a
"mask" field marks real snippets. `EvalData` is the evaluation data source: avjax.evals reads
no dataset files itself, the evaluator, the probes and `python -m avjax.inputs` are given one.

TensorFlow only feeds data here; it is kept off GPUs, which belong to JAX.
"""

import atexit
import math
import weakref

import jax
import numpy as np
import tensorflow as tf
from absl import logging

from avjax.data import audio
from avjax.data import batch_layout
from avjax.data import ops
from avjax.data import records
from avjax.data import sampling
from avjax.data import scene_sampling
from avjax.data import snippets
from avjax.data import titles as titles_lib


class BadRecordError(ValueError):
  """A snippet record that cannot be decoded or has the wrong shape."""


def _process_defaults(process_index, process_count, num_local_devices):
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  num_local_devices = jax.local_device_count() if num_local_devices is None else num_local_devices
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} not in [0, {process_count})")
  return int(process_index), int(process_count), int(num_local_devices)


# ---------------------------------------------------------------------------
# Iterators.


_LIVE = weakref.WeakSet()


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
    ops.hide_gpus_from_tensorflow()
    self.config = config
    self.titles, self.left_out = titles_lib.readable_titles(config, titles)
    self.title_ids = [t["id"] for t in self.titles]
    self.params = params
    self.skipped = set()  # (title index, snippet index) of bad records
    self._source = records.TitlesReader(self.titles, config.open_files,
                                        verify=config.get("verify_records", True))
    self._snippet_fn = None
    self._step = 0
    self._it = None
    if not _LIVE:  # the exit hook is registered with the first iterator, at most once
      atexit.unregister(_close_live_iterators)
      atexit.register(_close_live_iterators)
    _LIVE.add(self)  # closed at exit

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
      try:
        serialized = self._source.read(n, m)
      except records.CorruptRecordError as e:
        bad.append((n, m, [e.detail]))
        continue
      problems = snippets.check_record(serialized, self.title_ids[n], m, self.params,
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
      self._snippet_fn = snippets.snippet_fn(self.config, self.params, train)
    ds = tf.data.Dataset.from_generator(generator, output_signature=signature).unbatch()
    ds = ds.map(self._snippet_fn, num_parallel_calls=ops.parallel_calls(
        self.config.num_parallel), deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(self.config.prefetch).with_options(ops.dataset_options())

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
  1], "title_index" int32 [b] (into `title_ids`), "snippet_index" int32 [b]. Attributes
  title_ids, sampler, snippets_per_epoch, groups_per_batch, num_skipped, and
  sampler_position(step).
  """

  def __init__(self, config, titles, params, *, global_batch_size, start_step,
               process_index, process_count, num_local_devices):
    super().__init__(config, titles, params)
    self.k = int(config.k)
    self.global_batch_size = int(global_batch_size)
    self.groups_per_batch, self.groups_per_host, self.batch_size = (
        batch_layout.check_batch_layout(global_batch_size, self.k, process_count,
                                        num_local_devices))
    self.process_index, self.process_count = process_index, process_count
    self.start_step = int(start_step)
    if self.start_step < 0:
      raise ValueError(f"start_step={start_step}: must be >= 0")
    try:
      self.sampler = scene_sampling.make_sampler(config, self.titles, self.groups_per_batch)
    except sampling.TooFewSnippetsError as e:  # the data, not the code: one line, no trace
      raise titles_lib.BadDatasetError(
          f"{'+'.join(titles_lib.dataset_paths(config.dataset))}: {len(self.titles)} training "
          f"titles for batch size {self.global_batch_size}: {e}") from None
    self.snippets_per_epoch = self.sampler.snippets_per_epoch
    # Global batch (start_step + i) is the i-th this iterator yields.
    self._layout = (self.start_step, self.groups_per_batch, self.groups_per_host,
                    process_index)

  @property
  def num_left_out(self):
    """Training titles not drawn: unreadable ones (skip_bad_records) and those with fewer
    than k snippets."""
    return len(self.left_out) + self.sampler.num_dropped

  def sampler_position(self, step):
    """Sampler position of the first group of global batch `step`: where a run resumed
    after `step` steps draws from (saved with each checkpoint)."""
    return batch_layout.first_position(step, self.groups_per_batch)

  def _snippets_of_batch(self, step):
    groups = _host_groups(self.sampler, self.skipped, self._layout, step)
    return [(n, int(m)) for _, (n, idx) in groups for m in idx]

  def _build(self, step):
    # The generator holds plain objects, not the iterator, so that a dropped iterator is
    # freed (with its files) without an explicit close().
    k, layout, sampler, skipped, source = (self.k, self._layout, self.sampler, self.skipped,
                                           self._source)

    def generate():
      s = step
      while True:
        for pos, (n, idx) in _host_groups(sampler, skipped, layout, s):
          try:
            data = np.array([source.read(n, int(m)) for m in idx], dtype=object)
          except records.ClosedReaderError:
            return  # the iterator was closed; tf.data's prefetch stops here, quietly
          keys = pos * k + np.arange(k, dtype=np.int64)  # augmentation seeds
          yield data, np.full(k, n, np.int32), idx.astype(np.int32), keys
        s += 1

    signature = (tf.TensorSpec([k], tf.string), tf.TensorSpec([k], tf.int32),
                 tf.TensorSpec([k], tf.int32), tf.TensorSpec([k], tf.int64))
    return self._dataset(generate, signature, self.batch_size, True, train=True)


def _host_groups(sampler, skipped, layout, step):
  """[(sampler position, (title, snippet indices))] of this host's groups in the iterator's
  batch `step`; groups holding a skipped record are redrawn (HierarchicalSampler.batch)."""
  start_step, groups_per_batch, groups_per_host, process_index = layout
  index = start_step + step  # the global batch is the sampler's batch of the same number
  bad = None
  if skipped:
    bad = lambda n, idx: any((n, int(m)) in skipped for m in idx)
  try:
    groups = sampler.batch(index, bad)
  except sampling.BadGroupsError as e:
    raise BadRecordError(str(e)) from None
  first = int(process_index) * int(groups_per_host)
  start = batch_layout.first_position(index, groups_per_batch) + first
  return list(zip(range(start, start + groups_per_host), groups[first:first + groups_per_host]))


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
    items = [(n, m) for n, t in enumerate(self.titles) for m in range(t["num_snippets"])]
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
        try:
          data = np.array([source.read(n, m)], dtype=object)
        except records.ClosedReaderError:
          return  # the iterator was closed; tf.data's prefetch stops here, quietly
        yield data, np.array([n], np.int32), np.array([m], np.int32), np.zeros(1, np.int64)

    signature = (tf.TensorSpec([1], tf.string), tf.TensorSpec([1], tf.int32),
                 tf.TensorSpec([1], tf.int32), tf.TensorSpec([1], tf.int64))
    return self._dataset(generate, signature, self.batch_size, False, train=False)

  def _finish(self, batch):
    return ops.pad_batch(self._empty() if batch is None else batch, self.batch_size)

  def _empty(self):
    c = self.config
    frames = audio.num_frames(records.samples_per_snippet(self.params), c.hop)
    return dict(video=np.zeros((0, c.num_frames, c.crop_size, c.crop_size, 3), np.float32),
                audio=np.zeros((0, c.mel_bins, frames, 1), np.float32),
                title_index=np.zeros((0,), np.int32), snippet_index=np.zeros((0,), np.int32))


def make_train_iterator(config, *, global_batch_size, start_step=0, process_index=None,
                        process_count=None, num_local_devices=None):
  """Host-local training batches of the hierarchical policy (module docstring: layout).

  Args:
    config: the data config (`default_config()`).
    global_batch_size: B, over all hosts; a multiple of k * processes * local devices.
    start_step: the global batch to start at (a resumed run's step); the iterator draws
      from sampler position start_step * B / k on.
    process_index, process_count, num_local_devices: default to JAX's.
  Returns:
    A TrainIterator (its docstring has the batch dict) of b = B / process_count rows.
  """
  process_index, process_count, num_local_devices = _process_defaults(
      process_index, process_count, num_local_devices)
  manifest = titles_lib.pooled_manifest(config.dataset)
  titles_lib.check_format(config, manifest["params"])
  titles = titles_lib.select_titles(manifest, config)
  return TrainIterator(config, titles, manifest["params"], global_batch_size=global_batch_size,
                       start_step=start_step, process_index=process_index,
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
  manifest = titles_lib.pooled_manifest(config.dataset)
  titles_lib.check_format(config, manifest["params"])
  split = config.eval_split if split is None else split
  titles = titles_lib.select_titles(manifest, config, split=split, budget=0)
  return EvalIterator(config, titles, manifest["params"], global_batch_size=batch_size,
                      process_index=process_index, process_count=process_count,
                      num_local_devices=num_local_devices)


class EvalData:
  """The snippets evaluations embed, from a pretraining config's data (one pass each).

  held_out: every snippet of the held-out titles (config.data.eval_split).
  training_titles: whole training titles drawn by seed up to a snippet budget (the
    probe's training set).
  """

  def __init__(self, data_config):
    self.config = data_config
    self.manifest = titles_lib.pooled_manifest(data_config.dataset)
    self.snippet_seconds = records.snippet_seconds(self.manifest["params"])

  def held_out(self, batch_size):
    return make_eval_iterator(self.config, batch_size=batch_size)

  def training_titles(self, batch_size, *, seed, max_snippets):
    titles = titles_lib.select_titles(self.manifest, self.config, budget=0)
    rng = np.random.default_rng([int(seed), 0x9B0B])
    chosen, total = [], 0
    for n in rng.permutation(len(titles)):
      if chosen and total + titles[n]["num_snippets"] > max_snippets:
        continue
      chosen.append(int(n))
      total += titles[n]["num_snippets"]
    return EvalIterator(
        self.config, [titles[n] for n in sorted(chosen)], self.manifest["params"],
        global_batch_size=batch_size, process_index=jax.process_index(),
        process_count=jax.process_count(), num_local_devices=jax.local_device_count())
