"""Downstream datasets: layouts and their errors, prepare, train inputs and test views."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from avjax.data import audio as audio_lib
from avjax.data import ops
from avjax.downstream import config as downstream_config
from avjax.downstream import input as downstream_input
from avjax.data import layouts
from avjax.downstream import prepare as downstream_prepare
from avjax.downstream import views as views_lib
from avjax.media import decode
from helpers import (ESC_CLASSES, HMDB_CLASSES, UCF_CLASSES, make_esc50, make_hmdb51,
                     make_ucf101, write_video)

def tiny_video_config(data_dir, **overrides):
  c = downstream_config.default_config("ucf101")
  c.data_dir = data_dir
  c.num_frames, c.crop_size, c.scale_min, c.scale_max = 4, 16, 20, 24
  c.test_short_side, c.shuffle_buffer = 20, 8
  c.update(overrides)
  return c


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory):
  return make_ucf101(str(tmp_path_factory.mktemp("ucf101")))


@pytest.fixture(scope="module")
def ucf_prepared(ucf_root, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("ucf101_prepared"))
  report = downstream_prepare.prepare("ucf101", ucf_root, out, short_side=24,
                                      clips_per_shard=4, progress=False)
  return out, report


# ---------------------------------------------------------------------------
# Layouts.


def test_ucf101_layout(ucf_root):
  layout = layouts.read_layout("ucf101", ucf_root)
  assert layout.classes == list(UCF_CLASSES)
  assert len(layout.clips) == 6 and not layout.missing and not layout.unlisted
  # The case mismatch of "HandStandPushups" in file names is resolved.
  hs = [c for c in layout.clips if c.label == 1]
  assert all(os.path.exists(c.path) for c in hs) and hs[0].id.startswith("HandstandPushups/")
  for s in (1, 2, 3):
    train, test = layout.splits[s]["train"], layout.splits[s]["test"]
    assert len(train) == 4 and len(test) == 2 and not set(train) & set(test)
    assert sorted(train + test) == sorted(c.id for c in layout.clips)
  assert layout.splits[1]["test"] == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01",
                                      "HandstandPushups/v_HandStandPushups_g01_c01"]


def _copy_ucf_lists(ucf_root, tmp_path):
  """A UCF101 root whose video folder is shared with `ucf_root` and whose lists are copies."""
  import shutil  # pylint: disable=g-import-not-at-top
  root = tmp_path / "ucf"
  root.mkdir(parents=True)
  os.symlink(os.path.join(ucf_root, "UCF-101"), root / "UCF-101")
  shutil.copytree(os.path.join(ucf_root, "ucfTrainTestlist"), root / "ucfTrainTestlist")
  return root


def test_ucf101_errors_name_the_file(ucf_root, tmp_path):
  root = _copy_ucf_lists(ucf_root, tmp_path)
  lists = root / "ucfTrainTestlist"
  (lists / "testlist02.txt").unlink()
  with pytest.raises(FileNotFoundError, match="testlist02.txt: split file not found"):
    layouts.read_layout("ucf101", str(root))

  root = _copy_ucf_lists(ucf_root, tmp_path / "b")
  lists = root / "ucfTrainTestlist"
  with open(lists / "trainlist01.txt", "a") as f:
    f.write("Juggling/v_Juggling_g01_c01.avi 3\n")
  with pytest.raises(ValueError, match=r"trainlist01.txt:5: unknown class 'Juggling'"):
    layouts.read_layout("ucf101", str(root))

  root = _copy_ucf_lists(ucf_root, tmp_path / "c")
  lists = root / "ucfTrainTestlist"
  text = (lists / "trainlist03.txt").read_text().replace(" 1\n", " 2\n", 1)
  (lists / "trainlist03.txt").write_text(text)
  with pytest.raises(ValueError, match=r"trainlist03.txt:1: label '2' does not match"):
    layouts.read_layout("ucf101", str(root))

  root = _copy_ucf_lists(ucf_root, tmp_path / "d")
  (root / "ucfTrainTestlist" / "classInd.txt").write_text("1 ApplyEyeMakeup\nthree Foo\n")
  with pytest.raises(ValueError, match=r"classInd.txt:2: expected '<index> <class>'"):
    layouts.read_layout("ucf101", str(root))


def test_ucf101_missing_clip_is_reported_not_fatal(ucf_root, tmp_path):
  root = _copy_ucf_lists(ucf_root, tmp_path)
  with open(root / "ucfTrainTestlist" / "testlist01.txt", "a") as f:
    f.write("ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi\n")
  layout = layouts.read_layout("ucf101", str(root))
  assert [m[0] for m in layout.missing] == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01"]
  assert len(layout.splits[1]["test"]) == 2  # the missing clip is left out of the split


def test_hmdb51_layout_and_errors(tmp_path):
  root = make_hmdb51(str(tmp_path / "hmdb"))
  layout = layouts.read_layout("hmdb51", root)
  assert layout.classes == list(HMDB_CLASSES)
  for s in (1, 2, 3):
    assert layout.splits[s]["test"] == [f"{c}/{c}_clip{s - 1}" for c in HMDB_CLASSES]
    assert len(layout.splits[s]["train"]) == 4
  assert {c.label for c in layout.clips if c.id.startswith("cartwheel/")} == {1}

  split_dir = tmp_path / "hmdb" / "testTrainMulti_7030_splits"
  bad = split_dir / "cartwheel_test_split2.txt"
  bad.write_text("cartwheel_clip0.avi 1\ncartwheel_clip1.avi 7\n")
  with pytest.raises(ValueError,
                     match=r"cartwheel_test_split2.txt:2: expected '<file>.avi <0\|1\|2>'"):
    layouts.read_layout("hmdb51", root)
  bad.unlink()
  with pytest.raises(FileNotFoundError, match=r"cartwheel_test_split2.txt: split file not found"):
    layouts.read_layout("hmdb51", root)


def test_esc50_layout_and_errors(tmp_path):
  root = make_esc50(str(tmp_path / "esc"), seconds=0.2)
  layout = layouts.read_layout("esc50", root)
  assert layout.classes == list(ESC_CLASSES)
  for fold in range(1, 6):
    assert sorted(layout.splits[fold]["test"]) == [f"{fold}-1000-A-0", f"{fold}-1001-A-1"]
    assert len(layout.splits[fold]["train"]) == 8
  meta = tmp_path / "esc" / "meta" / "esc50.csv"
  meta.write_text(meta.read_text().replace("fold,", "fo1d,", 1))
  with pytest.raises(ValueError, match=r"esc50.csv: missing column\(s\) fold"):
    layouts.read_layout("esc50", root)
  meta.unlink()
  with pytest.raises(FileNotFoundError, match=r"meta/esc50.csv: ESC-50 metadata not found"):
    layouts.read_layout("esc50", root)


# ---------------------------------------------------------------------------
# Prepare.


def test_decode_video_picks_frames_by_timestamp(tmp_path):
  # 25 fps source, frame i a flat grey of 4 i: at 10 fps, frame k is source frame floor(2.5 k).
  path = str(tmp_path / "ramp.avi")
  write_video(path, seconds=2.0, levels=[4 * i for i in range(50)], codec="ffv1")
  frames, duration = decode.decode_frames(path, fps=10, short_side=16)
  assert len(frames) == 20 and duration == pytest.approx(2.0)
  levels = [float(tf.io.decode_jpeg(f).numpy().mean()) for f in frames]
  assert tf.io.decode_jpeg(frames[0]).shape == (16, 20, 3)  # shorter side 16, aspect kept
  np.testing.assert_allclose(levels, [4 * np.floor(2.5 * k) for k in range(20)], atol=3)


def test_prepare_writes_records_manifest_and_report(ucf_root, ucf_prepared, tmp_path):
  out, report = ucf_prepared
  assert report["counts"] == dict(listed=6, prepared=6, missing=0, unreadable=0, unlisted=0)
  manifest = downstream_prepare.load_prepared(out)
  assert manifest["classes"] == list(UCF_CLASSES) and len(manifest["clips"]) == 6
  assert [s["num_clips"] for s in manifest["shards"]] == [3, 3]  # clip j in shard j mod 2
  assert all(c["num_frames"] == 20 for c in manifest["clips"])  # 2 s at 10 fps
  assert manifest["splits"]["2"]["test"] == [
      "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01", "HandstandPushups/v_HandStandPushups_g02_c01"]

  # An unreadable clip is skipped, counted and named; the rest is prepared.
  root = _copy_ucf_lists(ucf_root, tmp_path)
  os.unlink(root / "UCF-101")
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(os.path.join(ucf_root, "UCF-101"), root / "UCF-101")
  broken = root / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g02_c01.avi"
  broken.write_bytes(b"not a video at all")
  out2 = str(tmp_path / "out")
  report = downstream_prepare.prepare("ucf101", str(root), out2, short_side=24,
                                      clips_per_shard=4, progress=False)
  assert report["counts"]["prepared"] == 5 and report["counts"]["unreadable"] == 1
  assert report["unreadable"][0]["id"] == "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01"
  with open(os.path.join(out2, downstream_prepare.REPORT)) as f:
    assert json.load(f)["counts"]["unreadable"] == 1
  manifest = downstream_prepare.load_prepared(out2)
  assert "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01" not in manifest["splits"]["2"]["test"]

  # A rerun keeps finished shards (their summaries are not rewritten).
  shard_json = os.path.join(out2, downstream_prepare.SHARDS_DIR, "shard-00000.json")
  before = os.stat(shard_json).st_mtime_ns
  downstream_prepare.prepare("ucf101", str(root), out2, short_side=24, clips_per_shard=4,
                             progress=False)
  assert os.stat(shard_json).st_mtime_ns == before


def test_prepare_esc50_audio(tmp_path):
  root = make_esc50(str(tmp_path / "esc"), seconds=0.5)
  out = str(tmp_path / "out")
  report = downstream_prepare.prepare("esc50", root, out, progress=False)
  assert report["counts"]["prepared"] == 10
  manifest = downstream_prepare.load_prepared(out)
  # 0.5 s at 44.1 kHz resampled to 48 kHz.
  assert all(abs(c["num_samples"] - 24000) <= 64 for c in manifest["clips"])


# ---------------------------------------------------------------------------
# Inputs.


def test_train_and_test_batches_from_prepared_records(ucf_prepared):
  out, _ = ucf_prepared
  c = tiny_video_config(out)
  info = downstream_input.describe(c, 1)
  assert info == dict(classes=list(UCF_CLASSES), num_classes=2, num_train=4, num_test=2)
  train = downstream_input.train_dataset(c, 1, batch_size=4)
  assert train.options().autotune.enabled is False  # as pretraining's pipeline
  batch = next(train.as_numpy_iterator())
  assert batch["video"].shape == (4, 4, 16, 16, 3) and batch["video"].dtype == np.float32
  assert set(batch["label"]) <= {0, 1}
  assert np.isfinite(batch["video"]).all() and abs(batch["video"].mean()) < 3

  batches = list(downstream_input.test_batches(c, 1, batch_size=3, num_test=2))
  assert len(batches) == 1
  assert batches[0]["video"].shape == (3, 30, 4, 16, 16, 3)
  np.testing.assert_array_equal(batches[0]["mask"], [1, 1, 0])
  np.testing.assert_array_equal(batches[0]["label"][:2], [0, 1])

  # Two hosts: each test clip is read by exactly one, and both yield the same batch count.
  seen = []
  for p in range(2):
    host = list(downstream_input.test_batches(c, 1, batch_size=1, num_test=2, process_index=p,
                                              process_count=2))
    assert len(host) == 1
    seen += [b["label"][0] for b in host if b["mask"][0]]
  assert sorted(seen) == [0, 1]


def _pixels(video, c):
  """Normalized views back to pixel values 0..255."""
  return (video * np.asarray(c.video_std) + np.asarray(c.video_mean)) * 255


def _coordinate_frames(length, height, width):
  """uint8 frames whose channels encode (frame index, column, row): 10 t, 6 x, 6 y."""
  t, y, x = np.meshgrid(np.arange(length), np.arange(height), np.arange(width), indexing="ij")
  return np.stack([10 * t, 6 * x, 6 * y], -1).astype(np.uint8)


def test_video_test_views_are_10_clips_by_3_crops():
  length, num_frames, crop = 25, 4, 16
  c = tiny_video_config("", num_frames=num_frames, crop_size=crop, test_short_side=crop)
  frames = tf.constant(_coordinate_frames(length, crop, 40))  # no resize: pixels exact
  views = np.round(_pixels(views_lib.video_test_views(frames, 1.0, c).numpy(), c))
  assert views.shape == (30, num_frames, crop, crop, 3)
  starts = np.floor(np.linspace(0, length - num_frames, 10))  # first to last fitting start
  for v in range(30):
    clip, x0 = v // 3, (0, 12, 24)[v % 3]  # left, center, right along the longer side
    np.testing.assert_array_equal(views[v, :, 0, 0, 0], 10 * (starts[clip] + np.arange(4)))
    np.testing.assert_array_equal(views[v, 0, 0, :, 1], 6 * (x0 + np.arange(crop)))
    np.testing.assert_array_equal(views[v, 0, :, 0, 2], 6 * np.arange(crop))


def test_video_test_views_portrait_and_source_frame_rate():
  # Portrait frames crop top / center / bottom; a 25 fps source is read at 10 fps.
  c = tiny_video_config("", num_frames=4, crop_size=16, test_short_side=16, test_clips=2)
  frames = tf.constant(_coordinate_frames(25, 40, 16))
  views = np.round(_pixels(views_lib.video_test_views(frames, 2.5, c).numpy(), c))
  assert views.shape == (6, 4, 16, 16, 3)
  for v, y0 in zip(range(3), (0, 12, 24)):
    np.testing.assert_array_equal(views[v, 0, :, 0, 2], 6 * (y0 + np.arange(16)))
  # Clip 2 starts at the last start where 4 frames 2.5 apart fit: 25 - 3 * 2.5 - 1 = 16.5.
  np.testing.assert_array_equal(views[3, :, 0, 0, 0], 10 * np.floor(16.5 + 2.5 * np.arange(4)))


def test_video_train_view_crop_flip_and_jitter():
  c = tiny_video_config("", num_frames=4, crop_size=16, scale_min=20, scale_max=24)
  frames = tf.constant(_coordinate_frames(30, 32, 40))
  a = views_lib.video_train_view(frames, 1.0, tf.constant([1, 2], tf.int64), c).numpy()
  b = views_lib.video_train_view(frames, 1.0, tf.constant([1, 2], tf.int64), c).numpy()
  assert a.shape == (4, 16, 16, 3)
  assert -1e-3 <= _pixels(a, c).min() and _pixels(a, c).max() <= 255 + 1e-3
  np.testing.assert_array_equal(a, b)  # a pure function of the seed
  # Consecutive frames of a clip: the frame-index channel grows by one source frame.
  c.color_jitter = 0.0
  c.flip = False
  v = views_lib.video_train_view(frames, 1.0, tf.constant([3, 4], tf.int64), c).numpy()
  np.testing.assert_allclose(np.diff(_pixels(v, c)[:, 8, 8, 0]), 10, atol=1e-3)


def test_audio_test_views_are_10_uniform_clips():
  c = downstream_config.default_config("esc50")
  c.clip_seconds = 0.25
  rng = np.random.default_rng(0)
  pcm = (rng.standard_normal(48000) * 3000).astype(np.int16)  # 1 s at 48 kHz
  views = views_lib.audio_test_views(tf.constant(pcm), c).numpy()
  size = 12000
  starts = np.round(np.linspace(0, 48000 - size, 10)).astype(int)
  assert views.shape == (10, 96, audio_lib.num_frames(size), 1)
  for v, s in enumerate(starts):
    want = audio_lib.log_mel_spectrogram(tf.constant(pcm[s:s + size])).numpy()
    np.testing.assert_allclose(views[v], want, atol=1e-4)


def test_time_frequency_mask_bounds():
  spec = tf.ones([96, 100, 1])
  widths = []
  for i in range(40):
    out = ops.time_frequency_mask(spec, 0.5, tf.constant([i, 7], tf.int64))
    out = out.numpy()[..., 0]
    zero_rows = np.where((out == 0).all(1))[0]
    zero_cols = np.where((out == 0).all(0))[0]
    # One contiguous band per axis, each at most half of it; everything else untouched.
    for band, limit in ((zero_rows, 48), (zero_cols, 50)):
      assert len(band) <= limit
      assert len(band) == 0 or band[-1] - band[0] + 1 == len(band)
    keep = np.ones_like(out, bool)
    keep[zero_rows] = False
    keep[:, zero_cols] = False
    assert (out[keep] == 1).all()
    widths.append((len(zero_rows), len(zero_cols)))
  assert max(w[0] for w in widths) > 24 and max(w[1] for w in widths) > 25


def test_audio_train_view_shape():
  c = downstream_config.default_config("esc50")
  c.clip_seconds = 0.25
  pcm = tf.zeros([8000], tf.int16)  # shorter than a clip: zero-padded
  spec = views_lib.audio_train_view(pcm, tf.constant([0, 1], tf.int64), c)
  assert spec.shape == (96, audio_lib.num_frames(12000), 1)


def test_tfds_source_without_download(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  c = tiny_video_config(str(tmp_path), source="tfds", test_clips=2)
  with pytest.raises(FileNotFoundError, match="ucf101/ucf101_1.*is not generated"):
    downstream_input.describe(c, 1)
  with tfds.testing.mock_data(num_examples=3):
    batch = next(downstream_input.train_dataset(c, 1, batch_size=2).as_numpy_iterator())
    assert batch["video"].shape == (2, 4, 16, 16, 3)
    batches = list(downstream_input.test_batches(c, 1, batch_size=2, num_test=3))
  assert [b["mask"].sum() for b in batches] == [2, 1]
  assert batches[0]["video"].shape == (2, 6, 4, 16, 16, 3)


def test_config_errors():
  c = tiny_video_config("", crop_size=30)
  with pytest.raises(ValueError, match="crop_size 30 must be <= data.scale_min 20"):
    downstream_input.describe(c, 1)
  c = downstream_config.default_config("esc50")
  c.source = "tfds"
  with pytest.raises(ValueError, match="exists for ucf101 only"):
    downstream_input.describe(c, 1)
  c = tiny_video_config("/nonexistent")
  with pytest.raises(FileNotFoundError, match="prepare the dataset first"):
    downstream_input.describe(c, 1)
