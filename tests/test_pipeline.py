"""The tf.data input pipeline: batch layout, exact resume and sharding, eval, bad records."""

import jax
import numpy as np
import pytest
import tensorflow as tf
from jax.sharding import NamedSharding, PartitionSpec as P

from avjax import fileio
from avjax.data import config as data_config
from avjax.data import example
from avjax.data import ops
from avjax.data import pipeline
from avjax.data import records
from avjax.data import titles as titles_lib
from helpers import log_mel_numpy, make_tiny_dataset, tiny_data_config


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
  return tiny_dataset  # the session's tiny dataset (tests/conftest.py), read only


def _unnormalize(video, config):
  return video * np.asarray(config.video_std) + np.asarray(config.video_mean)


def _take(it, n):
  return [next(it) for _ in range(n)]


def _train(config, batch, **kwargs):
  kwargs = dict(dict(process_index=0, process_count=1, num_local_devices=1), **kwargs)
  return pipeline.make_train_iterator(config, global_batch_size=batch, **kwargs)


def test_shapes_dtypes_ranges_and_groups(dataset):
  config = tiny_data_config(dataset, color_jitter=0.5)
  it = _train(config, 8, num_local_devices=2)
  assert it.title_ids == ["movie_000", "movie_001", "movie_002", "show_00_e00", "show_00_e01"]
  assert it.snippets_per_epoch == 6 + 9 + 12 + 9 + 12
  for step, batch in enumerate(_take(it, 3)):
    assert batch["video"].shape == (8, 4, 32, 32, 3) and batch["video"].dtype == np.float32
    assert batch["audio"].shape == (8, 96, 75, 1) and batch["audio"].dtype == np.float32
    assert batch["title_index"].dtype == batch["snippet_index"].dtype == np.int32
    raw = _unnormalize(batch["video"], config)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert np.isfinite(batch["audio"]).all() and np.abs(batch["audio"]).max() < 20
    # Batch s is groups [s G, (s + 1) G) of the sampler stream, in order.
    for j in range(4):
      n, idx = it.sampler.group(step * 4 + j)
      np.testing.assert_array_equal(batch["title_index"][2 * j:2 * j + 2], [n, n])
      np.testing.assert_array_equal(batch["snippet_index"][2 * j:2 * j + 2], idx)
  # The iterator owns the sampler position: a run resumed after 3 steps draws from 3 G on.
  assert it.sampler_position(3) == 12
  # Fixed parallelism, no autotuning: dropping a tuned iterator could wait for the tuner.
  assert it._build(3).options().autotune.enabled is False  # pylint: disable=protected-access


def test_global_array_shards_hold_whole_groups(tmp_path):
  k = 2
  make_tiny_dataset(tmp_path, movies=17, shows=0, snippets_per_title=(4,))  # 16 for training
  config = tiny_data_config(tmp_path, k=k)
  it = _train(config, 32, num_local_devices=jax.local_device_count())
  batch = next(it)
  assert jax.device_count() == 8, "tests/conftest.py simulates 8 CPU devices"
  mesh = jax.make_mesh((8,), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  titles = jax.make_array_from_process_local_data(sharding, batch["title_index"])
  snippets = jax.make_array_from_process_local_data(sharding, batch["snippet_index"])
  shards = sorted(titles.addressable_shards, key=lambda s: s.index[0].start)
  snippet_shards = {s.device: np.asarray(s.data) for s in snippets.addressable_shards}
  assert len(shards) == 8
  for d, shard in enumerate(shards):
    t = np.asarray(shard.data)
    m = snippet_shards[shard.device]
    assert t.shape == (4,)
    for g in range(2):  # two whole groups per device, groups 2d and 2d + 1
      n, idx = it.sampler.group(2 * d + g)
      np.testing.assert_array_equal(t[g * k:(g + 1) * k], [n] * k)
      np.testing.assert_array_equal(m[g * k:(g + 1) * k], idx)


@pytest.mark.slow
def test_hosts_concatenate_to_the_single_host_stream_and_resume_exactly(dataset):
  config = tiny_data_config(dataset, w=3, color_jitter=0.3)
  single = _take(_train(config, 8), 2)
  for hosts in (2, 4):
    shares = [_take(_train(config, 8, process_index=p, process_count=hosts), 2)
              for p in range(hosts)]
    for s in range(2):
      for key in single[s]:
        np.testing.assert_array_equal(
            np.concatenate([shares[p][s][key] for p in range(hosts)]), single[s][key])
  # Resuming after 1 step (start_step=1) reproduces batch 1 bit for bit.
  resumed = next(_train(config, 8, start_step=1))
  for key in single[1]:
    np.testing.assert_array_equal(resumed[key], single[1][key])


@pytest.mark.parametrize("batch,kwargs,match", [
    (9, {}, "not a multiple of k=2"),
    (6, dict(process_count=2), "do not split evenly over 2 processes"),
    (8, dict(num_local_devices=4), "multiple of k \\* processes \\* devices = 8"),
])
def test_batch_layout_errors(dataset, batch, kwargs, match):
  config = tiny_data_config(dataset)
  if "process_count" in kwargs:
    kwargs["process_index"] = 0
  kwargs = dict(dict(process_index=0, process_count=1, num_local_devices=1), **kwargs)
  if kwargs.get("num_local_devices") == 4:
    batch = 12  # 6 groups, 6 per host, not divisible by 4 devices
  with pytest.raises(ValueError, match=match):
    pipeline.make_train_iterator(config, global_batch_size=batch, **kwargs)


def test_titles_short_of_k_are_counted_and_a_k_beyond_every_title_names_the_dataset(dataset):
  counts = [t["num_snippets"] for t in fileio.read_json(f"{dataset}/manifest.json")["titles"]
            if t["split"] == "train"]
  k = max(counts) - 1  # only the longest titles have k snippets
  it = _train(tiny_data_config(dataset, k=k), k)
  assert it.num_left_out == sum(c < k for c in counts) > 0
  with pytest.raises(titles_lib.BadDatasetError,
                     match=rf"^{dataset}: .*no title has at least k={max(counts) + 1} snippets"):
    _train(tiny_data_config(dataset, k=max(counts) + 1), max(counts) + 1)


def test_select_titles(dataset):
  manifest = titles_lib.pooled_manifest([str(dataset)])
  ids = lambda titles: [t["id"] for t in titles]  # pylint: disable=unnecessary-lambda-assignment
  config = tiny_data_config(dataset)
  assert ids(titles_lib.select_titles(manifest, config, split="val")) == [
      "movie_003", "show_01_e00", "show_01_e01"]
  config.kinds = "movie"
  assert ids(titles_lib.select_titles(manifest, config)) == ["movie_000", "movie_001", "movie_002"]
  config.kinds = "episode"
  assert ids(titles_lib.select_titles(manifest, config)) == ["show_00_e00", "show_00_e01"]
  config.kinds = "both"
  config.genres = ["drama"]
  assert all("Drama" in t["genres"] for t in titles_lib.select_titles(manifest, config))
  config.genres = None
  config.title_budget = 3
  a = ids(titles_lib.select_titles(manifest, config))
  assert len(a) == 3 and a == ids(titles_lib.select_titles(manifest, config))
  config.kinds = "cartoons"
  with pytest.raises(ValueError, match="kinds"):
    titles_lib.select_titles(manifest, config)
  config.kinds = "both"
  config.title_budget = 50
  with pytest.raises(ValueError, match="title_budget=50"):
    titles_lib.select_titles(manifest, config)


def test_uniform_genre_mix_balances_genres():
  genres = ["A", "B", "C"]
  titles = [dict(id=f"t{i}", kind="movie", genres=[g], split="train", num_snippets=4)
            for i, g in enumerate(["A"] * 30 + ["B"] * 6 + ["C"] * 4)]
  manifest = dict(titles=titles)
  config = data_config.default_config()
  config.title_budget = 12
  config.genre_mix = "uniform"
  chosen = titles_lib.select_titles(manifest, config)
  counts = {g: sum(t["genres"] == [g] for t in chosen) for g in genres}
  assert counts == {"A": 4, "B": 4, "C": 4}
  config.title_budget = 16  # C runs out at 4: the rest split between A and B
  counts = {g: sum(t["genres"] == [g] for t in titles_lib.select_titles(manifest, config))
            for g in genres}
  assert counts == {"A": 6, "B": 6, "C": 4}
  config.genre_mix = "natural"
  natural = titles_lib.select_titles(manifest, config)
  assert len(natural) == 16
  config.seed = 1
  assert [t["id"] for t in titles_lib.select_titles(manifest, config)] != [
      t["id"] for t in natural]


def test_eval_visits_every_held_out_snippet_once(dataset):
  config = tiny_data_config(dataset)
  it = pipeline.make_eval_iterator(config, batch_size=8, process_index=0, process_count=1,
                                   num_local_devices=2)
  assert it.title_ids == ["movie_003", "show_01_e00", "show_01_e01"]
  batches = list(it)
  seen = []
  for b in batches:
    assert b["video"].shape == (8, 4, 32, 32, 3) and b["mask"].dtype == bool
    seen += [(it.title_ids[n], m) for n, m, ok in
             zip(b["title_index"], b["snippet_index"], b["mask"]) if ok]
  # 6 + 6 + 9 = 21 snippets: batches of 8, 8 and 5 (+ 3 padding rows).
  expected = [(t, m) for t, c in (("movie_003", 6), ("show_01_e00", 6), ("show_01_e01", 9))
              for m in range(c)]
  assert len(batches) == 3 and batches[-1]["mask"].sum() == 5
  assert seen == expected
  # Deterministic: centre crops, no augmentation.
  again = next(iter(pipeline.make_eval_iterator(
      config, batch_size=8, process_index=0, process_count=1, num_local_devices=1)))
  np.testing.assert_array_equal(again["video"], batches[0]["video"])
  np.testing.assert_array_equal(again["audio"], batches[0]["audio"])


def test_eval_shares_over_hosts_with_padding(dataset):
  config = tiny_data_config(dataset)
  seen, lengths = [], set()
  for p in range(2):
    it = pipeline.make_eval_iterator(config, batch_size=10, process_index=p, process_count=2,
                                     num_local_devices=1)
    batches = list(it)
    lengths.add(len(batches))
    for b in batches:
      assert b["video"].shape[0] == 5
      assert not b["video"][~b["mask"]].any()
      seen += [(n, m) for n, m, ok in zip(b["title_index"], b["snippet_index"], b["mask"]) if ok]
  assert lengths == {3}  # 11 and 10 snippets per host in batches of 5: 3, the last padded
  assert sorted(seen) == sorted(set(seen)) and len(seen) == 21


def test_eval_content_matches_direct_decoding(dataset):
  """Centre crop of the stored frames, normalized; audio is the numpy log-mel."""
  config = tiny_data_config(dataset)
  batch = next(pipeline.make_eval_iterator(config, batch_size=2, process_index=0,
                                           process_count=1, num_local_devices=1))
  with records.SnippetReader(str(dataset)) as reader:
    snippet = example.decode_snippet_numpy(reader.read("movie_003", 1))
  frames = np.stack([tf.io.decode_jpeg(f).numpy() for f in snippet["frames"]])
  h, w = frames.shape[1:3]
  oy, ox = (h - 32) // 2, (w - 32) // 2
  crop = frames[:, oy:oy + 32, ox:ox + 32].astype(np.float32) / 255
  video = _unnormalize(batch["video"][1], config)
  # Decoding only the crop window may round chroma differently on its edge pixels.
  np.testing.assert_allclose(video[:, 1:-1, 1:-1], crop[:, 1:-1, 1:-1], atol=1e-5)
  np.testing.assert_allclose(video, crop, atol=4 / 255)
  np.testing.assert_allclose(batch["audio"][1], log_mel_numpy(snippet["audio"]),
                             atol=2e-4)


def test_stored_at_another_size_is_resized_first(dataset):
  config = tiny_data_config(dataset, short_side=36, crop_size=30)  # stored at 40
  batch = next(_train(config, 4))
  assert batch["video"].shape == (4, 4, 30, 30, 3)
  raw = _unnormalize(batch["video"], config)
  assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_frame_stride_and_format_checks(dataset):
  batch = next(_train(tiny_data_config(dataset, num_frames=2), 4))
  assert batch["video"].shape == (4, 2, 32, 32, 3)
  with pytest.raises(ValueError, match="num_frames=3 must divide"):
    _train(tiny_data_config(dataset, num_frames=3), 4)
  with pytest.raises(ValueError, match="sample_rate"):
    _train(tiny_data_config(dataset, sample_rate=16000), 4)


def test_color_jitter():
  video = tf.constant(np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 3)), tf.float32)
  same = ops.apply_color_jitter(video, *ops.jitter_factors(0.0, tf.constant([1, 2], tf.int64)))
  np.testing.assert_array_equal(same.numpy(), video.numpy())  # sigma = 0 is the identity
  frames = tf.tile(video[:1], [4, 1, 1, 1])
  factors = ops.jitter_factors(1.0, tf.constant([1, 2], tf.int64))
  out = ops.apply_color_jitter(frames, *factors).numpy()
  assert not np.allclose(out, frames.numpy())
  assert out.min() >= 0 and out.max() <= 1
  for t in range(1, 4):  # the same factors for every frame of a snippet
    np.testing.assert_array_equal(out[t], out[0])


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory):
  path = tmp_path_factory.mktemp("bad")
  titles = [dict(id=f"m{i}", kind="movie", genres=["Drama"], split="train", num_snippets=4)
            for i in range(4)]
  titles += [dict(id="v0", kind="movie", genres=["Drama"], split="val", num_snippets=5)]
  make_tiny_dataset(path, titles, corrupt={("m1", 2): "jpeg", ("m2", 0): "audio_length",
                                           ("m3", 3): "frame_count", ("v0", 1): "jpeg"})
  return path


@pytest.mark.parametrize("title,snippet,what", [
    ("m1", 2, "corrupt JPEG"), ("m2", 0, "audio samples"), ("m3", 3, "3 frames")])
def test_bad_record_error_names_title_and_snippet(bad_dataset, title, snippet, what):
  config = tiny_data_config(bad_dataset, k=4)
  it = _train(config, 4)
  # With k = M_n = 4 every group is a whole title; find the first batch holding `title`.
  step = next(s for s in range(100) if it.title_ids[it.sampler.group(s)[0]] == title)
  it = _train(config, 4, start_step=step)  # one group per batch: step s is group s
  with pytest.raises(pipeline.BadRecordError, match=f"title {title} snippet {snippet}: .*{what}"):
    next(it)


@pytest.mark.slow
def test_skip_bad_records_replaces_whole_groups(bad_dataset):
  config = tiny_data_config(bad_dataset, k=4, skip_bad_records=True)
  it = _train(config, 4)
  for batch in _take(it, 6):
    titles = [it.title_ids[n] for n in batch["title_index"]]
    assert set(titles) <= {"m0"}, "only the title without bad records is left"
    np.testing.assert_array_equal(batch["snippet_index"], [0, 1, 2, 3])
  assert it.num_skipped == 3
  # Two groups need two distinct titles without bad records: one is left, so it says so.
  with pytest.raises(pipeline.BadRecordError, match="distinct titles"):
    _take(_train(config, 8), 6)


def test_eval_skips_bad_records(bad_dataset):
  config = tiny_data_config(bad_dataset)
  with pytest.raises(pipeline.BadRecordError, match="title v0 snippet 1"):
    list(pipeline.make_eval_iterator(config, batch_size=2, process_index=0, process_count=1,
                                     num_local_devices=1))
  config.skip_bad_records = True
  it = pipeline.make_eval_iterator(config, batch_size=2, process_index=0, process_count=1,
                                   num_local_devices=1)
  seen = [int(m) for b in it for m, ok in zip(b["snippet_index"], b["mask"]) if ok]
  assert seen == [0, 2, 3, 4] and it.num_skipped == 1


def test_a_pipeline_still_prefetching_after_close_ends_quietly(dataset, capfd):
  config = tiny_data_config(dataset)
  for it in (_train(config, 8), pipeline.make_eval_iterator(
      config, batch_size=8, process_index=0, process_count=1, num_local_devices=1)):
    next(iter(it))
    it.close()
    # What tf.data's prefetch thread does after a close: the generator reads on.
    assert not list(it._build(0).as_numpy_iterator())  # pylint: disable=protected-access
  assert "Traceback" not in capfd.readouterr().err


def test_snippet_reader_keeps_at_most_max_open_titles_open(dataset):
  manifest = records.load_manifest(str(dataset))
  ids = [t["id"] for t in manifest["titles"]][:4]
  reader = records.SnippetReader(str(dataset), max_open=2)
  for title_id in ids + ids[:1]:
    snippet = example.decode_snippet_numpy(reader.read(title_id, 1))
    assert (snippet["title_id"], snippet["snippet_index"]) == (title_id, 1)
    assert len(reader._open) <= 2  # pylint: disable=protected-access
  assert list(reader._open) == [ids[3], ids[0]]  # pylint: disable=protected-access
  with pytest.raises(IndexError, match=f"title {ids[0]}: snippet 999 out of range"):
    reader.read(ids[0], 999)
  reader.close()
  with pytest.raises(ValueError, match="closed SnippetReader"):
    reader.read(ids[0], 0)
