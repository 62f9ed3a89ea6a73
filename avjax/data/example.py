"""Snippets as tf.train.Example: encoding at ingest, parsing in the input pipeline.

The fields (paper Section 3: x_{n,m} = (a_{n,m}, v_{n,m})):
  title_id       bytes   the title n
  snippet_index  int64   m, 0-based, in time order
  start_time     float   seconds from the start of the title
  frames         bytes[] JPEG-encoded RGB frames (16 at 5 fps by default)
  audio          bytes   mono 16-bit little-endian PCM at 48 kHz (153,600 samples for 3.2 s)
"""

import numpy as np
import tensorflow as tf


def encode_snippet(title_id, snippet_index, start_time, frames_jpeg, audio_pcm):
  """Serializes one snippet as a tf.train.Example: `frames_jpeg` holds JPEG bytes, one per
  frame, `audio_pcm` the mono samples as a 1-D int16 array."""
  audio_pcm = np.asarray(audio_pcm)
  if audio_pcm.dtype != np.int16 or audio_pcm.ndim != 1:
    raise ValueError(f"title {title_id} snippet {snippet_index}: audio must be 1-D int16, "
                     f"got {audio_pcm.dtype} {audio_pcm.shape}")
  f = tf.train.Feature
  feature = {
      "title_id": f(bytes_list=tf.train.BytesList(value=[title_id.encode()])),
      "snippet_index": f(int64_list=tf.train.Int64List(value=[int(snippet_index)])),
      "start_time": f(float_list=tf.train.FloatList(value=[float(start_time)])),
      "frames": f(bytes_list=tf.train.BytesList(value=list(frames_jpeg))),
      "audio": f(bytes_list=tf.train.BytesList(value=[audio_pcm.astype("<i2").tobytes()])),
  }
  # Deterministic: map fields in key order, so the same snippet is the same bytes in any
  # process and a dataset can be checked by hash.
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
      deterministic=True)


_FEATURES = {
    "title_id": tf.io.FixedLenFeature([], tf.string),
    "snippet_index": tf.io.FixedLenFeature([], tf.int64),
    "start_time": tf.io.FixedLenFeature([], tf.float32),
    "frames": tf.io.VarLenFeature(tf.string),
    "audio": tf.io.FixedLenFeature([], tf.string),
}


def parse_snippet(serialized):
  """TF graph op: serialized Example -> dict with `frames` [T] JPEG strings and int16 `audio`."""
  ex = tf.io.parse_single_example(serialized, _FEATURES)
  ex["frames"] = tf.sparse.to_dense(ex["frames"], default_value=b"")
  ex["audio"] = tf.io.decode_raw(ex["audio"], tf.int16, little_endian=True)
  return ex


def decode_snippet_numpy(serialized):
  """Python-side decoding of a snippet (tests, tools): dict of numpy values, frames still JPEG."""
  ex = tf.train.Example.FromString(serialized).features.feature
  return dict(
      title_id=ex["title_id"].bytes_list.value[0].decode(),
      snippet_index=int(ex["snippet_index"].int64_list.value[0]),
      start_time=float(ex["start_time"].float_list.value[0]),
      frames=list(ex["frames"].bytes_list.value),
      audio=np.frombuffer(ex["audio"].bytes_list.value[0], dtype="<i2"),
  )
