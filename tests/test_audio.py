"""Log-mel spectrogram (Section 4.1) against a direct numpy computation, and band dropout."""

import numpy as np
import pytest
import tensorflow as tf

from avjax.data import audio
from avjax.data import ops
from helpers import log_mel_numpy, mel_weights_numpy


def _signal(num_samples, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / audio.SAMPLE_RATE
  x = 0.05 * rng.standard_normal(num_samples)
  for f in (110.0, 1000.0, 7500.0):
    x += 0.1 * np.sin(2 * np.pi * f * t)
  return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def test_frame_count_for_a_snippet():
  assert audio.num_frames(153600) == 300  # 3.2 s at 48 kHz, hop 512, end zero-padded
  assert audio.num_frames(153601) == 301


def test_mel_filters_match_numpy():
  tf_weights = tf.signal.linear_to_mel_weight_matrix(
      audio.MEL_BINS, audio.N_FFT // 2 + 1, audio.SAMPLE_RATE, audio.MEL_LOWER_HZ,
      audio.MEL_UPPER_HZ).numpy()
  np.testing.assert_allclose(tf_weights, mel_weights_numpy(), atol=1e-5)
  assert (mel_weights_numpy().sum(0) > 0).all(), "no empty mel filter"


def test_log_mel_matches_numpy():
  pcm = _signal(153600)
  spec = audio.log_mel_spectrogram(pcm).numpy()
  ref = log_mel_numpy(pcm)
  assert spec.shape == ref.shape == (96, 300, 1)
  assert spec.dtype == np.float32
  np.testing.assert_allclose(spec, ref, atol=2e-4)
  # The fixed normalization puts program-like audio near zero, order-one scale.
  assert abs(spec.mean()) < 3 and 0.1 < spec.std() < 3


def test_float_and_batched_input():
  pcm = np.stack([_signal(38400, 1), _signal(38400, 2)])
  spec = audio.log_mel_spectrogram(pcm).numpy()
  assert spec.shape == (2, 96, 75, 1)
  np.testing.assert_allclose(audio.log_mel_spectrogram(pcm.astype(np.float32) / 32768).numpy(),
                             spec, atol=1e-5)
  np.testing.assert_allclose(spec[1], log_mel_numpy(pcm[1]), atol=2e-4)


def test_other_parameters_match_numpy():
  pcm = _signal(16000, 3)
  kwargs = dict(sample_rate=16000, n_fft=512, hop=160, mel_bins=40, mel_upper_hz=8000.0,
                mean=0.0, std=1.0)
  np.testing.assert_allclose(audio.log_mel_spectrogram(pcm, **kwargs).numpy(),
                             log_mel_numpy(pcm, **kwargs), atol=2e-4)


def test_band_dropout():
  spec = tf.constant(np.random.default_rng(0).uniform(1, 2, (96, 300, 1)), tf.float32)
  axes = set()
  for i in range(200):
    out = ops.band_dropout(spec, 0.25, tf.constant([3, i], tf.int64)).numpy()
    dropped = out == 0
    rows, cols = dropped.all(axis=(1, 2)), dropped.all(axis=(0, 2))
    np.testing.assert_array_equal(out[~dropped], spec.numpy()[~dropped])
    if not dropped.any():
      continue
    if rows.any():
      band, length = rows, 96
      assert dropped[rows].all() and dropped.sum() == rows.sum() * 300
      axes.add("freq")
    else:
      band, length = cols, 300
      assert dropped.sum() == cols.sum() * 96
      axes.add("time")
    where = np.flatnonzero(band)
    assert np.array_equal(where, np.arange(where[0], where[-1] + 1)), "contiguous"
    assert len(where) <= int(0.25 * length)
  assert axes == {"freq", "time"}


def test_band_dropout_off_and_deterministic():
  spec = tf.ones((96, 75, 1))
  assert ops.band_dropout(spec, 0.0, [0, 1]) is spec
  a = ops.band_dropout(spec, 0.25, tf.constant([1, 2], tf.int64)).numpy()
  b = ops.band_dropout(spec, 0.25, tf.constant([1, 2], tf.int64)).numpy()
  np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_silence_hits_the_floor(dtype):
  spec = audio.log_mel_spectrogram(np.zeros(4096, dtype)).numpy()
  expected = (np.log(audio.LOG_FLOOR) - audio.MEL_MEAN) / audio.MEL_STD
  np.testing.assert_allclose(spec, expected, rtol=1e-5)
