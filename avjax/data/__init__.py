"""Data: ingest, snippet records, sampling and the tf.data input pipeline.

The only package of avjax that imports TensorFlow; it keeps TensorFlow off GPUs.
"""


def hide_gpus_from_tensorflow():
  """TensorFlow only feeds data: keep it off accelerators, which belong to JAX."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # already initialised; tensorflow-cpu has no GPUs anyway
    pass
