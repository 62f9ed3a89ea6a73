"""Test setup: 8 simulated CPU devices for sharding tests, TensorFlow kept off GPUs."""

import os

# Must happen before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

# Flax inits draw one threefry key per parameter; XLA:CPU compiles those ~4x slower than
# the "rbg" generator, which keeps the suite's many tiny-model inits fast.
jax.config.update("jax_default_prng_impl", "rbg")

