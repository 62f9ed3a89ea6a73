"""Log-mel spectrograms of snippet audio (Section 4.1).

Definition (tests/helpers.py computes the same in numpy, `log_mel_numpy`):
  1. PCM to float: int16 / 32768 (float input is taken as already in [-1, 1]).
  2. Frames of n_fft = 2048 samples every hop = 512 samples, periodic Hann window. Frame i
     starts at sample i * hop; no centering; the end is zero-padded so that there are
     ceil(num_samples / hop) frames: exactly 300 for a 3.2-s snippet at 48 kHz.
  3. Power spectrum |rfft|^2 (n_fft / 2 + 1 = 1025 bins).
  4. 96 triangular mel filters (HTK mel scale, 1127 ln(1 + f / 700)), edges evenly spaced
     in mel from mel_lower_hz to mel_upper_hz (0 Hz to Nyquist by default), peak weight 1,
     DC bin excluded: tf.signal.linear_to_mel_weight_matrix.
  5. log(mel + LOG_FLOOR), then (x - MEL_MEAN) / MEL_STD.
Layout: (mel_bins, frames, 1), i.e. P x Q with one channel, as the audio encoder reads it.

The normalization is fixed, not learned or estimated per batch: MEL_MEAN and MEL_STD are
the mean and standard deviation of the log-mel of pink noise at RMS levels spread evenly
over -60 .. -10 dBFS (a stand-in for the spectrum and dynamic range of film sound), so
program material lands near zero mean and unit scale. Override them in the config with
statistics of a real dataset if wanted.
"""

import tensorflow as tf

from avjax.data.config import (  # pylint: disable=g-multiple-import,unused-import
    HOP, LOG_FLOOR, MEL_BINS, MEL_LOWER_HZ, MEL_MEAN, MEL_STD, MEL_UPPER_HZ, N_FFT, SAMPLE_RATE)


def num_frames(num_samples, hop=HOP):
  """Spectrogram frames Q for `num_samples` (end zero-padded): ceil(num_samples / hop)."""
  return -(-int(num_samples) // int(hop))


def log_mel_spectrogram(pcm, *, sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP,
                        mel_bins=MEL_BINS, mel_lower_hz=MEL_LOWER_HZ,
                        mel_upper_hz=MEL_UPPER_HZ, log_floor=LOG_FLOOR, mean=MEL_MEAN,
                        std=MEL_STD):
  """Normalized log-mel spectrogram of mono PCM [..., samples] -> [..., mel_bins, frames, 1]."""
  pcm = tf.convert_to_tensor(pcm)
  x = tf.cast(pcm, tf.float32) / 32768.0 if pcm.dtype == tf.int16 else tf.cast(pcm, tf.float32)
  stft = tf.signal.stft(x, frame_length=n_fft, frame_step=hop, fft_length=n_fft,
                        window_fn=tf.signal.hann_window, pad_end=True)
  power = tf.math.real(stft * tf.math.conj(stft))
  weights = tf.signal.linear_to_mel_weight_matrix(
      num_mel_bins=mel_bins, num_spectrogram_bins=n_fft // 2 + 1, sample_rate=sample_rate,
      lower_edge_hertz=mel_lower_hz, upper_edge_hertz=mel_upper_hz)
  mel = tf.tensordot(power, weights, 1)  # [..., frames, mel_bins]
  logmel = (tf.math.log(mel + log_floor) - mean) / std
  return tf.expand_dims(tf.linalg.matrix_transpose(logmel), -1)

