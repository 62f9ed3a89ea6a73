r"""Run as each of several JAX processes: what this process's training input holds.

  python launch/local_multihost.py --variables=slurm -- \
      python tests/multihost_input.py --workdir=W --steps=3

Joins the run as avjax's entry points do (sharding.maybe_initialize_distributed), builds
the pretraining input of W/config.json exactly as training does (pretrain.train_iterator),
and writes W/input_process_<i>.json: how the process joined, and per batch its host-local
(title, snippet) ids, per-example video and audio sums (the augmented content), and the
title ids of the global batch put together from every process (host_to_global, then
gathered back to every host).
"""

import os

import jax
import ml_collections
import numpy as np
from absl import app
from absl import flags
from jax.experimental import multihost_utils

from avjax import fileio
from avjax import sharding

flags.DEFINE_string("workdir", None, "A pretraining workdir with config.json.", required=True)
flags.DEFINE_integer("steps", 3, "Batches to read.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  joined = sharding.maybe_initialize_distributed()
  from avjax.pretrain import task as pretrain  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(fileio.read_json(os.path.join(FLAGS.workdir,
                                                                   "config.json")))
  iterator = pretrain.train_iterator(config, start_step=0)
  mesh = sharding.make_mesh()
  batches = []
  for _ in range(FLAGS.steps):
    batch = next(iterator)
    global_batch = sharding.host_to_global(batch, mesh)
    batches.append(dict(
        title=batch["title_index"].tolist(), snippet=batch["snippet_index"].tolist(),
        video=batch["video"].reshape(len(batch["video"]), -1).sum(1).tolist(),
        audio=batch["audio"].reshape(len(batch["audio"]), -1).sum(1).tolist(),
        global_title=np.asarray(multihost_utils.process_allgather(
            global_batch["title_index"], tiled=True)).tolist()))
  iterator.close()
  out = dict(joined=joined, source=(sharding.cluster_settings() or ("", {}))[0],
             process_index=jax.process_index(), process_count=jax.process_count(),
             local_devices=jax.local_device_count(), devices=jax.device_count(),
             batches=batches)
  fileio.write_json(os.path.join(FLAGS.workdir, f"input_process_{jax.process_index()}.json"),
                    out)


if __name__ == "__main__":
  app.run(main)
