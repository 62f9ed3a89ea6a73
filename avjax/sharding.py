"""Device mesh, shardings, and host-local -> global arrays (single or multi-host).

Training is data-parallel: one mesh axis "data" over every device of every host. Parameters
and optimizer state are replicated; a batch is split along its first axis so that each
device's shard holds whole k-groups (the pipeline arranges that). The mesh uses Auto axes,
so XLA's partitioner places the collectives (one gradient all-reduce, and an all-gather of
the embeddings for the loss over the global batch).
"""

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

# Environment variables that mark a multi-process launch that jax.distributed.initialize()
# auto-detects (SLURM srun, Open MPI mpirun, TPU pod VMs, Kubernetes Indexed Jobs).
# AVJAX_DISTRIBUTED=1 asks for it explicitly (launch/tpu_pod.sh sets it: a TPU VM's
# workers are found through its metadata server, not the environment).
_CLUSTER_MARKERS = {
    "AVJAX_DISTRIBUTED": lambda v: v == "1",
    "SLURM_NTASKS": lambda v: int(v) > 1,
    "OMPI_COMM_WORLD_SIZE": lambda v: int(v) > 1,
    "TPU_WORKER_HOSTNAMES": lambda v: "," in v,
    "JAX_COORDINATOR_ADDRESS": lambda v: bool(v),
}


def maybe_initialize_distributed():
  """Calls jax.distributed.initialize() when launched as several processes.

  Must run before any other JAX call. Returns True when it initialized. Explicit settings
  are read from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (e.g. a
  Kubernetes JobSet sets these from the job index); otherwise JAX's own cluster detection
  fills them in.
  """
  if not any(k in os.environ and ok(os.environ[k]) for k, ok in _CLUSTER_MARKERS.items()):
    return False
  kwargs = {}
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                  process_id=int(os.environ["JAX_PROCESS_ID"]))
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def make_mesh(num_devices=None):
  """A 1-D data-parallel mesh over all devices (or the first `num_devices`)."""
  n = num_devices or jax.device_count()
  devices = jax.devices()[:n] if num_devices else None
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharding(mesh):
  """Split the leading (batch) axis over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def host_to_global(batch, mesh):
  """Assembles a global jax.Array from each host's local share of the batch.

  Host p passes its contiguous slice of the global batch; the result is sharded over all
  devices of all hosts along the batch axis.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def local_batch_size(global_batch_size):
  if global_batch_size % jax.process_count():
    raise ValueError(f"global batch {global_batch_size} does not divide over "
                     f"{jax.process_count()} processes")
  return global_batch_size // jax.process_count()


# ---------------------------------------------------------------------------
# Train state, built sharded from the start, and the jitted update step.


def replicated_state(init_fn, mesh, *args):
  """(abstract state, shardings) of `init_fn(rng, *args)`: every leaf replicated over `mesh`.

  Nothing is computed: `jax.eval_shape` traces the init. Data parallelism keeps
  parameters and optimizer state replicated; only batches are split.
  """
  abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0), *args)
  return abstract, jax.tree.map(lambda _: replicated(mesh), abstract)


def init_state(init_fn, rng, state_shardings, *args):
  """`init_fn(rng, *args)` jitted with the target shardings: built in place on every
  device, never materialised on one host first."""
  return jax.jit(init_fn, out_shardings=state_shardings)(rng, *args)


def jit_update(update_fn, mesh, state_shardings):
  """`update_fn(state, batch) -> (state, measurements)` jitted for `mesh`: state in its
  shardings and donated, batch split over "data", measurements replicated."""
  return jax.jit(update_fn, in_shardings=(state_shardings, batch_sharding(mesh)),
                 out_shardings=(state_shardings, replicated(mesh)), donate_argnums=(0,))
