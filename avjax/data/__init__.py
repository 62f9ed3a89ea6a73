"""Data: snippet records, the sampling policy, and the tf.data input pipeline.

TensorFlow is imported by the modules that use it (example, ops, audio, pipeline, fake);
`config`, `records`, `sampling` and `titles` need none.
"""
