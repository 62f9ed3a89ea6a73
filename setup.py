"""avjax: self-supervised audio-visual representation learning from movies and TV shows."""

import setuptools

# Tested ranges; constraints.txt pins the exact set CI runs.
INSTALL_REQUIRES = [
    "jax>=0.10,<0.12",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "chex>=0.1.92",
    "ml-collections>=1.1",
    "absl-py>=2.1",
    "numpy>=2.0",
    "clu>=0.0.12",
    "google-crc32c>=1.5",
    # Datasets and ingest outputs on object stores (gs://, s3://) without TensorFlow.
    "etils[epath]>=1.7",
    "matplotlib>=3.9",
    "tqdm>=4.66",
]

# TensorFlow only feeds data (avjax/data/): an accelerator host that runs the
# step benchmark needs none of it, so it is an extra that `launch/*.sh` installs.
DATA_REQUIRES = [
    "tensorflow-cpu>=2.18,<2.22",
    "tensorflow-datasets>=4.9.7",
    "tensorboard>=2.18",
    "av>=14",
    "pillow>=10",
]

# Ingest at catalogue scale (avjax/ingest/beam.py) on Dataflow, Flink or Spark. Beam caps
# protobuf below 7, so constraints.txt pins protobuf 6 for the whole stack.
BEAM_REQUIRES = DATA_REQUIRES + ["apache-beam>=2.77,<3"]

setuptools.setup(
    name="avjax",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["avjax", "avjax.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "data": DATA_REQUIRES,
        "test": DATA_REQUIRES + ["pytest>=8", "pytest-xdist>=3.8"],
        "beam": BEAM_REQUIRES,
        "cuda": ["jax[cuda12]>=0.10,<0.12"],
        "tpu": ["jax[tpu]>=0.10,<0.12"],
        # The PyTorch reference for `benchmarks/peer_torch.py` and `.pth` conversion.
        "torch": ["torch>=2.9", "torchvision>=0.24"],
    },
)
