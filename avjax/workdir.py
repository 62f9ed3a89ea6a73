"""A run's workdir: one run at a time (a lock naming it), and config.json once the run's
inputs are checked, every change recorded first."""

import contextlib
import json
import os

import jax
from absl import logging

from avjax import console
from avjax import dirlock
from avjax import fileio
from avjax import resume

RUN_LOCK = ".run.lock"  # one run per workdir (avjax.dirlock): PID, host, refreshed


class WorkdirError(OSError):
  """The workdir cannot be used: a file stands there, or it cannot be written."""


@contextlib.contextmanager
def lock(workdir, purpose):
  """Holds WORKDIR/.run.lock (process 0) while the block runs: a second run in the same
  workdir is refused at once, naming this one (dirlock.LockedError). A workdir that this
  made and that is empty afterwards (a refused start) is removed again."""
  if jax.process_index() != 0:
    yield
    return
  made = not os.path.lexists(workdir)
  if os.path.lexists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir}: a file stands there, not a folder; give a "
                       "folder (new or of an earlier run)")
  try:
    lock = dirlock.DirLock(workdir, RUN_LOCK, purpose).acquire()
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir}: cannot write there ({type(e).__name__}: "
                       f"{e.strerror or e}); give a folder you can write to") from None
  try:
    yield
  finally:
    lock.release()
    if made:
      with contextlib.suppress(OSError):
        os.rmdir(workdir)  # only when empty: a start that wrote nothing leaves nothing


def open_workdir(workdir, config, start_step=0, run_changes=(), data_changes=None):
  """The workdir, its log file and config.json, once the task has checked its inputs;
  every change of config.json is appended to config_history.jsonl first."""
  os.makedirs(workdir, exist_ok=True)
  console.attach_log(workdir, jax.process_index())
  logging.info("workdir %s", workdir)
  if jax.process_index() == 0:
    path = os.path.join(workdir, resume.CONFIG_FILE)
    old = fileio.read_json(path) if os.path.exists(path) else None
    new = _with_absolute_paths(json.loads(config.to_json()))
    resume.record_changes(workdir, old, new, start_step, list(run_changes), data_changes)
    fileio.write_json(path, new)


def _with_absolute_paths(config):
  """config.json names local dataset folders absolutely, so that commands run from another
  folder (avjax.discrepancy --workdir, avjax.export) find them."""
  data = config.get("data") or {}
  fix = lambda p: os.path.abspath(p) if p and "://" not in p else p
  # Pretraining names its dataset folders in data.dataset; fine-tuning names a dataset
  # there (e.g. "ucf101") and its folder in data.data_dir.
  for key in ("data_dir",) if "data_dir" in data else ("dataset",):
    value = data.get(key)
    if isinstance(value, str):
      data[key] = fix(value)
    elif isinstance(value, list):
      data[key] = [fix(p) if isinstance(p, str) else p for p in value]
  return config
