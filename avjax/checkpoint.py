"""Orbax checkpoints: the training state, and the exported backbones f and g.

A training checkpoint holds the whole train state (params, BatchNorm statistics, optimizer
state, step, RNG) plus a small JSON of run metadata (e.g. the sampler position, and the
config fields that define the run: avjax.resume.run_fields), so a restarted run continues
the same loss curve, and a restart with another config is noticed (avjax.resume compares
them).
Saves are asynchronous; restores go straight into target shardings (no host holds the
full state first). Opening a Checkpointer has no side effects beyond the directory: the
preemption signal is the training loop's business (avjax.loop).

A checkpoint whose files cannot be read (truncated, flipped bytes, missing parts) raises
DamagedCheckpointError with its step and the real cause in one line; `set_aside` moves it
to checkpoints/<step>.damaged, where Orbax no longer sees it, so the next restore finds
the newest intact one.

An export holds only the backbones f ("video_encoder") and g ("audio_encoder"), their
variables and a JSON of the model config; heads are discarded (paper Section 3). It is
written beside its folder (OUTPUT.partial) and renamed into place, under a lock
(.OUTPUT.export.lock beside it), so a killed export never damages a complete one.
"""

import contextlib
import functools
import json
import os
import re
import shutil
import sys

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers
from orbax.checkpoint._src.metadata import array_metadata_store
from orbax.checkpoint._src.serialization import type_handler_registry

from avjax import dirlock
from avjax import fileio
from avjax import sharding

CHECKPOINT_DIR = "checkpoints"
EXPORT_CONFIG = "model_config.json"
BACKBONES = ("video_encoder", "audio_encoder")

# What a checkpoint whose files are damaged makes Orbax/TensorStore raise (as opposed to,
# say, a target of another shape): read errors, truncation, corruption, missing parts.
_DAMAGE = re.compile(r"Error reading|DATA_LOSS|OUT_OF_RANGE|NOT_FOUND|corrupt|decompress|"
                     r"was not found in the checkpoint|No such file|Unexpected end|checksum",
                     re.IGNORECASE)


class ExportError(ValueError):
  """A workdir or step that cannot be exported; the message says why and what to do."""


class CheckpointSaveError(OSError):
  """A checkpoint could not be written (a full disk, no permission); said in one line."""


class DamagedCheckpointError(RuntimeError):
  """A checkpoint whose files cannot be read; `step` and `cause` say which and why."""

  def __init__(self, step, cause):
    super().__init__(f"checkpoint at step {step} cannot be restored: {cause}")
    self.step, self.cause = step, cause


def _one_line(error):
  """The real cause of `error` in one line (TensorStore specs and tracebacks left out)."""
  text = f"{type(error).__name__}: {error}".split(" [tensorstore_spec")[0]
  text = " ".join(text.split())
  return text if len(text) <= 300 else text[:297] + "..."


def _is_damage(error):
  if isinstance(error, (json.JSONDecodeError, FileNotFoundError, EOFError)):
    return True
  return bool(_DAMAGE.search(str(error)))


def _quiet_closed_loop_noise():
  """Drops the 'Event loop is closed' reports TensorStore callbacks make after a failed
  restore has closed Orbax's event loop (dozens of tracebacks hiding the real cause).
  Installed for the process at the first restore; other reports pass through."""
  hook = sys.unraisablehook
  if getattr(hook, "_avjax_quiet", False):
    return

  def quiet(unraisable):
    if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(
        unraisable.exc_value):
      return
    hook(unraisable)
  quiet._avjax_quiet = True  # pylint: disable=protected-access
  sys.unraisablehook = quiet


def abstract_like(tree, shardings):
  """ShapeDtypeStructs carrying `shardings`: the target of a sharded restore."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


@functools.cache
def _whole_small_arrays():
  """Orbax splits the writing of a replicated array among its replicas, one slicing program
  per device and array shape: for small arrays those compilations (seconds at the first
  save) cost more than the split saves. Below 1 MiB a slice, one replica writes the whole
  array. (Orbax's own default handler, with that threshold added, registered without Orbax's
  warning on the console; called before saving.)"""
  type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(
      jax.Array, ocp.type_handlers.ArrayHandler(
          array_metadata_store=array_metadata_store.Store(),
          min_slice_bytes_for_replica_parallel=1 << 20), override=True, ignore_warnings=True)


def _sync(name):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


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
    _whole_small_arrays()
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self._save_failed = False

  def latest_step(self):
    return self.manager.latest_step()

  def should_save(self, step):
    return self.manager.should_save(step)

  def save(self, step, state, meta, *, force=False):
    """Saves asynchronously; returns whether a save was started. A failed save (this one,
    or the previous one still writing) raises CheckpointSaveError."""
    try:
      return self.manager.save(
          step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                        meta=ocp.args.JsonSave(meta)),
          force=force)
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(f"at step {step}", e) from None

  def restore(self, abstract_state, step=None):
    """(state, meta) of `step` (default: latest) restored into `abstract_state`'s shardings.

    abstract_state None: the saved tree as it is, replicated over this run's devices
    (`replicated_target`), whatever topology wrote it. Raises DamagedCheckpointError when
    the checkpoint's files cannot be read.
    """
    step = self.latest_step() if step is None else step
    if abstract_state is None:
      abstract_state = replicated_target(os.path.join(self.directory, str(step), "state"))
    restored = self._restore(step, state=ocp.args.StandardRestore(abstract_state),
                             meta=ocp.args.JsonRestore())
    return restored.state, restored.meta

  def restore_meta(self, step=None):
    """The run metadata of `step` (default: latest) alone: cheap, no arrays are read."""
    step = self.latest_step() if step is None else step
    return self._restore(step, meta=ocp.args.JsonRestore()).meta

  def _restore(self, step, **items):
    _quiet_closed_loop_noise()  # before: the noise starts while Orbax unwinds the failure
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      if not _is_damage(e):
        raise
      raise DamagedCheckpointError(step, _one_line(e)) from e

  def set_aside(self, step):
    """Moves checkpoint `step` to checkpoints/<step>.damaged[.N]; returns the new path.

    Process 0 moves it; every process then sees the remaining checkpoints.
    """
    target = os.path.join(self.directory, f"{step}.damaged")
    if jax.process_index() == 0:
      n = 1
      while os.path.exists(target):
        target = os.path.join(self.directory, f"{step}.damaged.{n}")
        n += 1
      os.rename(os.path.join(self.directory, str(step)), target)
    _sync(f"avjax-set-aside-{step}")
    self.manager.reload()
    return target

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
    """Waits for the save in flight. After a failed save, later failures are only logged:
    the first one is what the run reports."""
    try:
      self.manager.wait_until_finished()
      self.manager.close()
    except Exception as e:  # pylint: disable=broad-except
      if self._save_failed:
        logging.error("checkpoint manager after a failed save: %s", _one_line(e))
        return
      raise self._save_error("still in flight at the end", e) from None

  def _save_error(self, when, error):
    """One line for the console (the cause, where, what to do); the trace to the log file.
    Orbax's 'Event loop is closed' reports that follow a failed save are dropped."""
    self._save_failed = True
    _quiet_closed_loop_noise()
    logging.error("checkpoint save %s failed", when, exc_info=error)
    return CheckpointSaveError(
        f"{self.directory}: a checkpoint save {when} failed: {_one_line(error)}; free space "
        "or fix the permissions there and rerun the same command (it resumes from the "
        "newest complete checkpoint; the full trace is in log.txt)")


# ---------------------------------------------------------------------------
# Export of the backbones for downstream evaluation.


def _export_lock(output_dir):
  """The lock of an export folder: a file beside it, since the folder itself is replaced."""
  parent, name = os.path.split(output_dir)
  return dirlock.DirLock(parent, f".{name}.export.lock", "export")


def _finish_replacement(output_dir):
  """Completes an export killed between its two renames (OUTPUT moved to OUTPUT.previous,
  the new one not yet in place): the previous export goes back; leftovers are removed."""
  previous = output_dir + ".previous"
  if os.path.isdir(previous):
    if os.path.exists(output_dir):
      shutil.rmtree(previous)
    else:
      os.rename(previous, output_dir)
      logging.warning("%s: put back the export that an interrupted export had moved aside",
                      output_dir)
  shutil.rmtree(output_dir + ".partial", ignore_errors=True)


def export_backbones(output_dir, variables, model_config):
  """Writes f and g (params and batch_stats) and the model config to `output_dir`.

  The export is written to OUTPUT.partial and renamed into place: an existing export is
  replaced only by a complete one. Another export into the same folder is refused
  (dirlock.LockedError).

  Args:
    output_dir: a new or existing directory; an existing export there is replaced.
    variables: {"params": ..., "batch_stats": ...} of the whole AVModel.
    model_config: the ConfigDict (or dict) the model was built from.
  """
  output_dir = os.path.abspath(output_dir)
  partial = output_dir + ".partial"
  tree = {
      col: {name: variables[col][name] for name in BACKBONES}
      for col in ("params", "batch_stats")
  }
  primary = jax.process_index() == 0
  with _export_lock(output_dir) if primary else contextlib.nullcontext():
    if primary:
      _finish_replacement(output_dir)
    _sync(f"avjax-export-start-{output_dir}")
    _whole_small_arrays()
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(os.path.join(partial, "backbones"), tree, force=True)
    if primary:
      config = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
      fileio.write_json(os.path.join(partial, EXPORT_CONFIG), config)
      if os.path.exists(output_dir):
        os.rename(output_dir, output_dir + ".previous")
      os.rename(partial, output_dir)
      shutil.rmtree(output_dir + ".previous", ignore_errors=True)
  _sync(f"avjax-export-done-{output_dir}")
  logging.info("exported backbones to %s", output_dir)


def load_export(export_dir, *, shardings=None):
  """(variables, model_config dict) of an export: variables[col][backbone].

  Restored into `shardings` (a tree like the variables), or replicated over this run's
  devices (`replicated_target`).
  """
  export_dir = os.path.abspath(export_dir)
  config_path = os.path.join(export_dir, EXPORT_CONFIG)
  if not os.path.exists(config_path):
    hint = ""
    if os.path.isdir(export_dir + ".previous"):
      hint = (f" (an export into it was interrupted: rerun python -m avjax.export, which puts "
              f"back {export_dir}.previous)")
    raise FileNotFoundError(f"{export_dir}: not an avjax export (no {EXPORT_CONFIG}){hint}; "
                            "make one with python -m avjax.export")
  model_config = fileio.read_json(config_path)
  path = os.path.join(export_dir, "backbones")
  if shardings is None:
    abstract = replicated_target(path)
  else:
    with ocp.StandardCheckpointer() as ckptr:
      abstract = abstract_like(ckptr.metadata(path).item_metadata, shardings)
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(path, abstract), model_config


def export_workdir(workdir, output, step=None):
  """Restores a training checkpoint of `workdir` and writes its backbones to `output`.

  Raises FileNotFoundError for a folder without config.json, ExportError (one line: what
  and what to do) for a fine-tuning run, a step it does not have, or a checkpoint a live
  run removed while it was read.
  """
  workdir = os.path.abspath(workdir)
  config_path = os.path.join(workdir, "config.json")
  if not os.path.isdir(workdir) or not os.path.exists(config_path):
    raise FileNotFoundError(f"{workdir}: not a pretraining workdir (no config.json); give the "
                            "--workdir of a python -m avjax.main run")
  config = fileio.read_json(config_path)
  model_config = config.get("model", {})
  if "mode" in config or not all(k in model_config for k in ("video", "audio")):
    raise ExportError(f"{workdir}: a fine-tuning run (config.json has mode="
                      f"{config.get('mode')!r}), not a pretraining run; export the pretraining "
                      "run it started from (its results.json names it as init)")
  ckpt = Checkpointer(workdir, every_steps=1)
  try:
    steps = ckpt.all_steps()
    step = (steps[-1] if steps else None) if step is None else step
    if step is None:
      raise ExportError(f"{workdir}: no checkpoints to export (the run has not saved one yet)")
    if step not in steps:
      raise ExportError(f"{workdir}: no checkpoint of step {step}; steps there: "
                        f"{', '.join(map(str, steps)) or 'none'}")
    # Restore the saved tree as it is (on this run's devices); only the backbones are needed.
    try:
      state, _ = ckpt.restore(None, step=step)
    except (DamagedCheckpointError, FileNotFoundError):
      ckpt.manager.reload()
      if step not in ckpt.all_steps():  # a live run's keep_checkpoints removed it meanwhile
        raise ExportError(
            f"{workdir}: the checkpoint of step {step} was removed while it was read (the "
            "run is still training and keeps only its newest checkpoints); rerun the export, "
            "or pass --step of a checkpoint it keeps") from None
      raise
  finally:
    ckpt.close()
  export_backbones(output, state, model_config)  # reads only the backbones' variables
  return step
