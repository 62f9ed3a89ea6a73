"""Guarded restarts: a changed run config is refused with a field diff, damaged checkpoints
are set aside and the newest intact one resumes, every config change is recorded.

The fields that define a run (RUN_FIELDS) are saved with every checkpoint and compared
with the restarting config here; `flat_fields` is the one flattening of a config into
dotted names (also the TensorBoard hparams of avjax.loop).
"""

import json
import os
import time

from absl import logging

from avjax import fileio

CONFIG_FILE = "config.json"
CONFIG_HISTORY = "config_history.jsonl"
# config.resume: refuse a restart that changes a run field, or resume and record the change.
RESUME_MODES = ("guard", "allow_changes")

# The config fields that define a run (what is learned, from what, how): a restart that
# changes one of them is refused unless allowed (check_resume). Paths and machinery that do
# not change the numbers (where the data lies, prefetch depth, rematerialisation) are not.
RUN_FIELDS = ("data", "model", "loss", "optimizer", "batch_size", "mode", "dropout", "init",
              "init_torch", "init_torch_prefix")
# Fields with no meaningful default: a checkpoint that does not record one (written before it
# was a run field) is not compared on it, rather than compared with the default.
UNDEFAULTED_FIELDS = ("init", "init_torch", "init_torch_prefix")
NOT_RUN_FIELDS = ("data.dataset", "data.data_dir", "data.prefetch", "data.num_parallel",
                  "data.open_files", "data.skip_bad_records", "data.verify_records",
                  "model.remat")


def flat_fields(config, prefix=""):
  """{dotted name: JSON value} of a config (ConfigDict or dict), nested fields flattened."""
  if hasattr(config, "to_json"):
    config = json.loads(config.to_json())
  out = {}
  for key, value in config.items():
    if isinstance(value, dict):
      out.update(flat_fields(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def run_fields(config):
  """{dotted name: value} of the fields that define the run (RUN_FIELDS, not NOT_RUN_FIELDS)."""
  def defining(name):
    inside = lambda names: any(name == n or name.startswith(n + ".") for n in names)
    return inside(RUN_FIELDS) and not inside(NOT_RUN_FIELDS)
  return {k: v for k, v in flat_fields(config).items() if defining(k)}


def changed_fields(old, new, defaults=None):
  """[(field, old value, new value)] of two flat field dicts that differ.

  A field missing on one side (a field added or removed since) counts as its value in
  `defaults` (flat); without a default there it is not compared.
  """
  defaults = defaults or {}
  missing = object()
  out = []
  for name in sorted(set(old) | set(new)):
    a = old.get(name, defaults.get(name, missing))
    b = new.get(name, defaults.get(name, missing))
    if a is missing or b is missing:
      continue
    if a != b and not (isinstance(a, (int, float)) and isinstance(b, (int, float))
                       and float(a) == float(b)):
      out.append((name, a, b))
  return out


class ResumeConfigError(ValueError):
  """A restart whose config changes fields that define the run (without allow_changes)."""


class ResumeDataError(ResumeConfigError):
  """A restart on a dataset whose titles changed since the checkpoint (without allow_changes)."""


class NoIntactCheckpointError(RuntimeError):
  """Every checkpoint of the workdir is damaged; nothing to resume from."""


def set_aside(ckpt, error):
  target = ckpt.set_aside(error.step)
  logging.error("%s; moved it aside to %s, resuming from the newest intact checkpoint",
                error, os.path.relpath(target, os.path.dirname(ckpt.directory)))


def newest_readable(ckpt):
  """(step, meta) of the newest checkpoint whose metadata reads, or (0, None) for a fresh
  start; damaged ones are set aside on the way."""
  # Imported here: the config checks (avjax.validate) read RESUME_MODES without Orbax.
  from avjax import checkpoint  # pylint: disable=g-import-not-at-top
  while True:
    step = ckpt.latest_step()
    if step is None:
      damaged = (sorted(d for d in os.listdir(ckpt.directory) if ".damaged" in d)
                 if os.path.isdir(ckpt.directory) else [])
      if damaged:
        raise NoIntactCheckpointError(
            f"{ckpt.directory}: no intact checkpoint to resume from; damaged: "
            f"{', '.join(damaged)}. To start over, remove {ckpt.directory} or use a new "
            "--workdir.")
      return 0, None
    try:
      return step, ckpt.restore_meta(step)
    except checkpoint.DamagedCheckpointError as e:
      set_aside(ckpt, e)


def check_resume(config, workdir, start_step, meta, defaults=None):
  """Refuses a restart that changes the run's defining fields; returns those changes
  (allowed by resume=allow_changes), for the loop to record (record_changes). Writes nothing.

  The stored run config is the checkpoint's (meta["run_config"]), or, for checkpoints
  written before it was stored, WORKDIR/config.json.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  old = fileio.read_json(path) if os.path.exists(path) else None
  allowed = config.get("resume", "guard") == "allow_changes"
  run_changes = []
  if start_step:
    stored = (meta or {}).get("run_config")
    source = f"the checkpoint at step {start_step}"
    if stored is None and old is not None:
      stored, source = run_fields(old), f"{path} (of the run at step {start_step})"
    if stored is None:
      logging.warning("%s: the checkpoint at step %d stores no config to compare with; "
                      "resuming unchecked", workdir, start_step)
    else:
      run_changes = changed_fields(stored, run_fields(config), _defaults(defaults))
    if run_changes and not allowed:
      diff = "\n".join(f"  {name}: {a!r} -> {b!r}" for name, a, b in run_changes)
      raise ResumeConfigError(
          f"{workdir}: this config changes fields that define the run, compared with "
          f"{source}:\n{diff}\nRestart with the same config to resume it, use a new "
          "--workdir for a new run, or pass --config.resume=allow_changes to resume with "
          f"these changes (recorded in {CONFIG_HISTORY}).")
  return run_changes


def check_data(config, workdir, start_step, meta, fingerprint):
  """Refuses a restart whose data (titles, snippet counts, splits, entries) differ from
  the checkpoint's (meta["data_fingerprint"], avjax.data.titles.fingerprint); returns the
  changes (allowed by resume=allow_changes) for record_data_changes, or None. Writes
  nothing."""
  stored = (meta or {}).get("data_fingerprint")
  if not start_step or fingerprint is None or stored is None:
    return None
  changes = fingerprint_changes(stored, fingerprint)
  if not any(changes.values()):
    return None
  if config.get("resume", "guard") != "allow_changes":
    raise ResumeDataError(
        f"{workdir}: the dataset changed since the checkpoint at step {start_step}:\n"
        f"{describe_data_changes(changes)}\nThe same data stream cannot be resumed. "
        "Restore the dataset, use a new --workdir for a new run, or pass "
        f"--config.resume=allow_changes to resume on this data (recorded in {CONFIG_HISTORY}).")
  return changes


def describe_data_changes(changes, limit=20):
  """Lines of titles added, removed and changed (at most `limit` of each, then a count)."""
  def listing(items):
    items = list(items)
    more = f", ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
  lines = []
  for key in ("added", "removed"):
    if changes[key]:
      lines.append(f"  titles {key} ({len(changes[key])}): {listing(changes[key])}")
  if changes["changed"]:
    lines.append(f"  titles changed ({len(changes['changed'])}): "
                 + listing(f"{t} ({w})" for t, w in changes["changed"].items()))
  return "\n".join(lines)


def _defaults(defaults):
  if defaults is None:
    return None
  return {k: v for k, v in run_fields(defaults).items() if k not in UNDEFAULTED_FIELDS}


def read_history(workdir):
  """The entries of WORKDIR/config_history.jsonl (config changes at restarts), oldest first."""
  path = os.path.join(workdir, CONFIG_HISTORY)
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def record_changes(workdir, old, new, start_step, run_changes, data_changes=None):
  """Appends one entry for this restart to config_history.jsonl: the config's changes, and
  the data's (check_data) when a restart on changed data was allowed."""
  if (old is None or old == new) and not data_changes:
    return
  absent = "<absent>"
  a, b = flat_fields(old or new), flat_fields(new)
  changes = {k: [a.get(k, absent), b.get(k, absent)] for k in sorted(set(a) | set(b))
             if a.get(k, absent) != b.get(k, absent)}
  entry = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S"), step=int(start_step),
               changes=changes, run_fields_changed=[n for n, _, _ in run_changes],
               allowed_by="resume=allow_changes" if run_changes or data_changes else None)
  if data_changes:
    entry["data_changes"] = data_changes
  with open(os.path.join(workdir, CONFIG_HISTORY), "a", encoding="utf-8") as f:
    f.write(json.dumps(entry) + "\n")
  if changes:
    logging.warning("config changed since the last start at step %d (recorded in %s): %s",
                    start_step, CONFIG_HISTORY,
                    "; ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in changes.items()))
  if data_changes:
    logging.warning("the dataset changed since step %d (recorded in %s):\n%s", start_step,
                    CONFIG_HISTORY, describe_data_changes(data_changes))


def fingerprint_changes(old, new):
  """{"added": [ids], "removed": [ids], "changed": {id: what}} between two fingerprints;
  empty lists and dict when they agree."""
  changed = {}
  for tid in sorted(set(old) & set(new)):
    (n0, s0, h0), (n1, s1, h1) = old[tid], new[tid]
    what = []
    if n0 != n1:
      what.append(f"snippets {n0} -> {n1}")
    if s0 != s1:
      what.append(f"split {s0} -> {s1}")
    if h0 != h1 and not what:
      what.append("entry changed (show, genres, duration or scenes)")
    if what:
      changed[tid] = ", ".join(what)
  return dict(added=sorted(set(new) - set(old)), removed=sorted(set(old) - set(new)),
              changed=changed)
