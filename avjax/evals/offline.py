"""The discrepancy evaluation of a pretraining workdir, offline (python -m avjax.discrepancy).

`evaluate_workdir` restores kept checkpoints and evaluates them as the trainer's periodic
evaluation does (avjax.evals.discrepancy), into the workdir's discrepancy.json.
`evaluate_baseline` evaluates the run's random initialisation alone, at step 0, into
baseline.json: the measures and probes of the step-0 encoders, the same with BatchNorm
recalibrated on the probe's training snippets, and the probes on raw-input statistics of
the same snippets. It needs only config.json, and every run of the same seed, model and
probe options shares it (same initialisation, same probe snippets).
"""

import os

import jax
import ml_collections

from avjax import checkpoint
from avjax import fileio
from avjax import metrics as metrics_lib
from avjax import sharding
from avjax import validate
from avjax.evals import discrepancy
from avjax.models import av


def _load(workdir, overrides):
  """(absolute workdir, run config, discrepancy options with `overrides`) of a workdir."""
  workdir = os.path.abspath(workdir)
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path}: not a pretraining workdir (no config.json)")
  config = ml_collections.ConfigDict(fileio.read_json(config_path))
  options = discrepancy.options_from(config)
  for key, value in (overrides or {}).items():
    if key not in options:
      raise ValueError(f"unknown discrepancy option {key!r}; known: {sorted(options)}")
    options[key] = value
  return workdir, config, options


def evaluate_workdir(workdir, data_source, *, steps=None, overrides=None, write=True):
  """Restores checkpoints of a pretraining workdir and runs the discrepancy evaluation.

  Args:
    workdir: holds config.json and checkpoints/.
    data_source: the run's data config -> the snippets to embed
      (avjax.data.pipeline.EvalData).
    steps: list of checkpoint steps; None: the latest; "all": every kept checkpoint.
    overrides: dict of discrepancy.default_config() fields to change.
    write: write discrepancy.json, scalars and figures into the workdir.
  Returns:
    The list of step entries.
  """
  workdir, config, options = _load(workdir, overrides)
  validate.check({"discrepancy": options, "batch_size": config.batch_size})
  ckpt = checkpoint.Checkpointer(workdir, every_steps=1)
  try:
    available = ckpt.all_steps()
    if not available:
      raise FileNotFoundError(f"{workdir}: no checkpoints to evaluate")
    if steps is None:
      steps = available[-1:]
    elif steps == "all":
      steps = available
    missing = [s for s in steps if s not in available]
    if missing:
      raise FileNotFoundError(f"{workdir}: no checkpoint for step(s) {missing}; "
                              f"available: {available}")
    model = av.build_model(config.model)
    mesh = sharding.make_mesh()
    data = data_source(config.data)
    writer = metrics_lib.MetricWriter(workdir) if write else None
    entries = []
    for step in steps:
      state, _ = ckpt.restore(None, step=step)
      entry, edges, mass = discrepancy.evaluate_state(
          model, state, step, config, data, mesh, options=options,
          with_probe=step == steps[-1])
      if write:
        discrepancy.write_outputs(workdir, entry, edges, mass, options, writer)
      discrepancy.log_entry(entry)
      entries.append(entry)
    return entries
  finally:
    ckpt.close()


def evaluate_baseline(workdir, data_source, *, overrides=None):
  """The random-initialisation baseline of a pretraining workdir (the module docstring),
  written to WORKDIR/baseline.json; returns its entry (step 0)."""
  workdir, config, options = _load(workdir, overrides)
  options.update(probe=True, random_init=False, random_bn=True, input_probes=True)
  validate.check({"discrepancy": options, "batch_size": config.batch_size})
  model = av.build_model(config.model)
  mesh = sharding.make_mesh()
  data = data_source(config.data)
  batch_size = discrepancy.eval_batch_size(config, options)
  state = discrepancy.random_variables(model, config, next(iter(data.held_out(batch_size))))
  entry, _, _ = discrepancy.evaluate_state(model, state, 0, config, data, mesh, options=options)
  if jax.process_index() == 0:
    fileio.write_json(os.path.join(workdir, discrepancy.BASELINE_FILE),
                      dict(entry, seed=int(config.seed)))
  return entry
