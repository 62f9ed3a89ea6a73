"""Device mesh, shardings, and host-local -> global arrays (single or multi-host).

Training is data-parallel: one mesh axis "data" over every device of every host. Parameters
and optimizer state are replicated; a batch is split along its first axis so that each
device's shard holds whole k-groups (the pipeline arranges that). The mesh uses Auto axes,
so XLA's partitioner places the collectives (one gradient all-reduce, and an all-gather of
the embeddings for the loss over the global batch).
"""

import collections
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

# Launches that jax.distributed.initialize() detects by itself: Open MPI's mpirun, the VMs
# of a TPU pod (found through its metadata server, so launch/tpu_pod.sh says so with
# AVJAX_DISTRIBUTED=1), and the tasks of a SLURM job step (handled in cluster_settings).
_AUTODETECTED = {
    "AVJAX_DISTRIBUTED": lambda v: v == "1",
    "OMPI_COMM_WORLD_SIZE": lambda v: int(v) > 1,
    "TPU_WORKER_HOSTNAMES": lambda v: "," in v,
}
# Seconds without heartbeats before the coordination service declares a process dead and
# stops the others (JAX's default: 100). launch/local_multihost.py sets it shorter.
HEARTBEAT_ENV = "AVJAX_HEARTBEAT_TIMEOUT"


def cluster_settings(environ=None):
  """How this process joins a multi-process run, read from its environment; None: alone.

  Returns (source, kwargs): which variables said so, and the keyword arguments for
  jax.distributed.initialize ({} where JAX's own cluster detection fills them in).
  - JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID: any launcher that
    sets them (launch/local_multihost.py, the Kubernetes JobSet in launch/k8s/). In a
    Kubernetes Indexed Job, JOB_COMPLETION_INDEX stands in for a missing JAX_PROCESS_ID.
  - SLURM: the tasks of an srun step with several tasks (SLURM_STEP_NUM_TASKS or
    SLURM_NTASKS > 1, SLURM_STEP_NODELIST, SLURM_PROCID); JAX takes the coordinator from
    the step's first node and the port from JAX_COORDINATOR_PORT (default: from the job
    id). A batch script itself (SLURM_NTASKS > 1, no step) runs alone, with a warning.
  - Open MPI, TPU pods and AVJAX_DISTRIBUTED=1: left to JAX's detection.
  """
  env = os.environ if environ is None else environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    process_id = env.get("JAX_PROCESS_ID") or env.get("JOB_COMPLETION_INDEX")
    source = "JAX_COORDINATOR_ADDRESS" + (
        "" if env.get("JAX_PROCESS_ID") or not process_id else ", JOB_COMPLETION_INDEX")
    missing = [n for n, v in (("JAX_NUM_PROCESSES", env.get("JAX_NUM_PROCESSES")),
                              ("JAX_PROCESS_ID (or JOB_COMPLETION_INDEX)", process_id)) if not v]
    if missing:
      raise ValueError(f"JAX_COORDINATOR_ADDRESS={env['JAX_COORDINATOR_ADDRESS']} is set but "
                       f"{' and '.join(missing)} not: a multi-process launch needs all three")
    return source, dict(coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                        num_processes=int(env["JAX_NUM_PROCESSES"]),
                        process_id=int(process_id))
  slurm_tasks = int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1)
  if slurm_tasks > 1:
    if "SLURM_STEP_NODELIST" in env and "SLURM_PROCID" in env and "SLURM_JOB_ID" in env:
      return "SLURM", {}
    logging.warning("SLURM_NTASKS=%d but this process is not a task of an srun step (no "
                    "SLURM_STEP_NODELIST): running as one process; start it with srun to "
                    "run as %d", slurm_tasks, slurm_tasks)
  for name, ok in _AUTODETECTED.items():
    if env.get(name) and ok(env[name]):
      return name, {}
  return None


def _exit_at_once_on_uncaught_error():
  """An uncaught error ends this process at once, skipping jax.distributed's shutdown.

  At exit, jax.distributed waits (up to 5 minutes) for every process to reach shutdown.
  After an error on one process only (e.g. a bad record in its share of the input), the
  others wait in their next collective and this one at shutdown: all of them would hang
  for those minutes. Exiting at once stops this process's heartbeats, and the
  coordination service stops the others with an error that names it.
  """
  previous = sys.excepthook

  def hook(kind, value, traceback):
    previous(kind, value, traceback)
    logging.error("process %d of %d: uncaught %s; exiting now, the coordination service "
                  "stops the other processes", jax.process_index(), jax.process_count(),
                  kind.__name__)
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)  # pylint: disable=protected-access
  sys.excepthook = hook


def maybe_initialize_distributed():
  """Calls jax.distributed.initialize() when launched as one of several processes.

  Must run before any other JAX call. Returns True when it initialized. Where the
  settings come from: `cluster_settings`. AVJAX_HEARTBEAT_TIMEOUT (seconds) bounds how
  long the others run on after one process died.
  """
  settings = cluster_settings()
  if settings is None:
    return False
  source, kwargs = settings
  if os.environ.get(HEARTBEAT_ENV):
    kwargs["heartbeat_timeout_seconds"] = int(os.environ[HEARTBEAT_ENV])
  jax.distributed.initialize(**kwargs)
  _exit_at_once_on_uncaught_error()
  logging.info("jax.distributed (%s): process %d of %d, %d local / %d global devices",
               source, jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  _first_collective()
  return True


def _first_collective():
  """A sum over every device of every process, while the processes are still in step.

  On CPU, gloo connects the processes of a device set at the first collective over it
  and waits only 30 s for all of them to arrive. In training that first collective
  comes after each process compiled the update step, which on a busy host (or with a
  compilation cache that only process 0 writes) can keep one process minutes behind the
  other. Here, right after jax.distributed.initialize has met every process, the
  connection is made at once; later collectives over the same devices wait as long as
  it takes. The sum doubles as a check that the processes form one program.
  """
  mesh = make_mesh()
  ones = np.ones(jax.local_device_count(), np.float32)
  total = jax.jit(jnp.sum, out_shardings=replicated(mesh))(
      jax.make_array_from_process_local_data(batch_sharding(mesh), ones))
  if int(total) != jax.device_count():
    raise RuntimeError(f"a sum over all {jax.device_count()} devices of {jax.process_count()} "
                       f"processes gave {int(total)}: the processes do not form one program")


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
  abstract = jax.eval_shape(init_fn, jax.random.key(0), *args)
  return abstract, jax.tree.map(lambda _: replicated(mesh), abstract)


def init_state(init_fn, rng, state_shardings, *args):
  """`init_fn(rng, *args)` jitted with the target shardings: built in place on every
  device, never materialised on one host first."""
  return jax.jit(init_fn, out_shardings=state_shardings)(rng, *args)


# What `reused` built for the last few keys. jax.jit caches compiled programs by function
# object: a second run of the same settings in one process (the next seed of a sweep, a
# test and its control) that jits the same init and update functions skips their compiles.
_REUSED = collections.OrderedDict()
_REUSED_KEEP = 4


def reused(key, build):
  """`build()`, or what it returned before in this process for an equal `key` (JSON data:
  every setting the built functions depend on)."""
  key = json.dumps(key, sort_keys=True, default=str)
  if key not in _REUSED:
    _REUSED[key] = build()
    while len(_REUSED) > _REUSED_KEEP:
      _REUSED.popitem(last=False)
  _REUSED.move_to_end(key)
  return _REUSED[key]


def jit_update(update_fn, mesh, state_shardings):
  """`update_fn(state, batch) -> (state, measurements)` jitted for `mesh`: state in its
  shardings and donated, batch split over "data", measurements replicated."""
  return jax.jit(update_fn, in_shardings=(state_shardings, batch_sharding(mesh)),
                 out_shardings=(state_shardings, replicated(mesh)), donate_argnums=(0,))
