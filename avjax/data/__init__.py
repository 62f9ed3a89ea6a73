"""Data: ingest, snippet records, sampling and the tf.data input pipeline.

The only package of avjax that imports TensorFlow; it keeps TensorFlow off GPUs.
"""
