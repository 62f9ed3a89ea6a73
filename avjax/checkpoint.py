"""Orbax checkpoints: the training state, and the exported backbones f and g.

A training checkpoint holds the whole train state (params, BatchNorm statistics, optimizer
state, step, RNG) plus a small JSON of run metadata (e.g. the sampler position), so a
restarted run continues the same loss curve. Saves are asynchronous; restores go
straight into target shardings (no host holds the full state first). Opening a
Checkpointer has no side effects beyond the directory: the preemption signal is the
training loop's business (avjax.loop).

An export holds only the backbones f ("video_encoder") and g ("audio_encoder"), their
variables and a JSON of the model config; heads are discarded (paper Section 3).
"""

import os

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

from avjax import fileio
from avjax import sharding

CHECKPOINT_DIR = "checkpoints"
EXPORT_CONFIG = "model_config.json"
BACKBONES = ("video_encoder", "audio_encoder")


def abstract_like(tree, shardings):
  """ShapeDtypeStructs carrying `shardings`: the target of a sharded restore."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def replicated_target(path):
  """The restore target of the saved tree at `path` on this run's devices: every array
  replicated over all of them.

  The shardings stored with a tree name the devices of the run that wrote it; another
  topology (a two-process run's checkpoint or export read by one process, an 8-GPU
  checkpoint evaluated on a laptop) cannot restore into them.
  """
  with ocp.StandardCheckpointer() as ckptr:
    metadata = ckptr.metadata(path).item_metadata
  target = sharding.replicated(sharding.make_mesh())
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=target),
                      metadata)


class Checkpointer:
  """`ocp.CheckpointManager` with avjax's policies.

  Saves every `every_steps` steps (and whenever `save(force=True)`), keeps the last `keep`
  checkpoints plus every `keep_every_steps`-th step (if set).
  """

  def __init__(self, workdir, *, every_steps, keep=3, keep_every_steps=0, async_save=True):
    preserve = [checkpoint_managers.LatestN(keep)]
    if keep_every_steps:
      preserve.append(checkpoint_managers.EveryNSteps(keep_every_steps))
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=checkpoint_managers.AnySavePolicy([
            checkpoint_managers.FixedIntervalPolicy(every_steps),
            checkpoint_managers.PreemptionCheckpointingPolicy(),
        ]),
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(preserve),
        enable_async_checkpointing=async_save,
    )
    self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self):
    return self.manager.latest_step()

  def should_save(self, step):
    return self.manager.should_save(step)

  def save(self, step, state, meta, *, force=False):
    """Saves asynchronously; returns whether a save was started."""
    return self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=force)

  def restore(self, abstract_state, step=None):
    """(state, meta) of `step` (default: latest) restored into `abstract_state`'s shardings.

    abstract_state None: the saved tree as it is, replicated over this run's devices
    (`replicated_target`), whatever topology wrote it.
    """
    step = self.latest_step() if step is None else step
    if abstract_state is None:
      abstract_state = replicated_target(os.path.join(self.directory, str(step), "state"))
    restored = self.manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def all_steps(self):
    return sorted(self.manager.all_steps())

  def reached_preemption(self, step, signalled=False):
    """True on every process once preemption was announced.

    Several processes: JAX's preemption sync point (which a SIGTERM to any process
    triggers) makes all of them agree on the step. One process: `signalled`, the
    loop's SIGTERM flag.
    """
    if jax.process_count() > 1:
      return self.manager.reached_preemption(step)
    return signalled

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


# ---------------------------------------------------------------------------
# Export of the backbones for downstream evaluation.


def export_backbones(output_dir, variables, model_config):
  """Writes f and g (params and batch_stats) and the model config to `output_dir`.

  Args:
    output_dir: a new or existing directory; an existing export there is replaced.
    variables: {"params": ..., "batch_stats": ...} of the whole AVModel.
    model_config: the ConfigDict (or dict) the model was built from.
  """
  output_dir = os.path.abspath(output_dir)
  tree = {
      col: {name: variables[col][name] for name in BACKBONES}
      for col in ("params", "batch_stats")
  }
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(output_dir, "backbones"), tree, force=True)
  if jax.process_index() == 0:
    config = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
    fileio.write_json(os.path.join(output_dir, EXPORT_CONFIG), config)
  logging.info("exported backbones to %s", output_dir)


def load_export(export_dir, *, shardings=None):
  """(variables, model_config dict) of an export: variables[col][backbone].

  Restored into `shardings` (a tree like the variables), or replicated over this run's
  devices (`replicated_target`).
  """
  export_dir = os.path.abspath(export_dir)
  config_path = os.path.join(export_dir, EXPORT_CONFIG)
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{export_dir}: not an avjax export (no {EXPORT_CONFIG}); "
                            "make one with python -m avjax.export")
  model_config = fileio.read_json(config_path)
  path = os.path.join(export_dir, "backbones")
  if shardings is None:
    abstract = replicated_target(path)
  else:
    with ocp.StandardCheckpointer() as ckptr:
      meta = ckptr.metadata(path).item_metadata
    abstract = jax.tree.map(
        lambda m, s: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=s), meta, shardings)
  with ocp.StandardCheckpointer() as ckptr:
    variables = ckptr.restore(path, abstract)
  return variables, model_config


def export_workdir(workdir, output, step=None):
  """Restores a training checkpoint of `workdir` and writes its backbones to `output`."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path}: not a pretraining workdir (no config.json)")
  model_config = fileio.read_json(config_path)["model"]
  ckpt = Checkpointer(workdir, every_steps=1)
  step = ckpt.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"{workdir}: no checkpoints to export")
  # Restore the saved tree as it is (on this run's devices); only the backbones are needed.
  state, _ = ckpt.restore(None, step=step)
  ckpt.close()
  variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
  export_backbones(output, variables, model_config)
  return step
