"""Pretraining, the task avjax.loop runs: hierarchical input, f/g/heads, Eq. 1, export.

`build_task` wires the parts of paper Sections 3 and 4.1 for the loop: the input stream
of k-snippet groups (resumed at the saved step), the model and Adam with the warm-up +
cosine schedule, the pure update step (avjax.pretrain_step), the evaluators named in
`config.evals`, and at the end the export of the backbones f and g.

  python -m avjax.main --config=configs/pretrain.py:dataset=data/movie,k=16 --workdir=runs/k16
"""

import functools
import os

import jax
import ml_collections
import numpy as np

from avjax import checkpoint
from avjax import fileio
from avjax import loop
from avjax import metrics as metrics_lib
from avjax import optim
from avjax import pretrain_step
from avjax import sharding
from avjax import validate
from avjax.configs import pretrain as pretrain_config_file
from avjax.data import pipeline
from avjax.data import records
from avjax.data import titles as titles_lib
from avjax.evals import discrepancy
from avjax.models import av

# config.evals names evaluators; each entry is "name: every N steps" (0: off).
EVALUATORS = {"discrepancy": discrepancy.Evaluator}


class EvalData:
  """The snippets evaluations embed, from a pretraining config's data (one pass each).

  held_out: every snippet of the held-out titles (config.data.eval_split).
  training_titles: whole training titles drawn by seed up to a snippet budget (the
    probe's training set).
  """

  def __init__(self, data_config):
    self.config = data_config
    self.manifest = titles_lib.pooled_manifest(data_config.dataset)
    self.snippet_seconds = records.snippet_seconds(self.manifest["params"])

  def held_out(self, batch_size):
    return pipeline.make_eval_iterator(self.config, batch_size=batch_size)

  def training_titles(self, batch_size, *, seed, max_snippets):
    titles = titles_lib.select_titles(self.manifest, self.config, budget=0)
    rng = np.random.default_rng([int(seed), 0x9B0B])
    chosen, total = [], 0
    for n in rng.permutation(len(titles)):
      if chosen and total + titles[n]["num_snippets"] > max_snippets:
        continue
      chosen.append(int(n))
      total += titles[n]["num_snippets"]
    return pipeline.EvalIterator(
        self.config, [titles[n] for n in sorted(chosen)], self.manifest["params"],
        global_batch_size=batch_size, process_index=jax.process_index(),
        process_count=jax.process_count(), num_local_devices=jax.local_device_count())


def describe(m):
  """The console line's measurements (loss, learning rate, S+/S- means, retrieval)."""
  return (f"loss {m['loss']:.4f}  lr {m['learning_rate']:.2e}  "
          f"s+ {m['sim_positive']:.2f} s- {m['sim_negative']:.2f}  "
          f"top1 v2a {m['top1_v2a']:.3f}")


def train_iterator(config, start_step):
  """The input stream from step `start_step` on: the batches a run that never stopped
  reads there (the iterator owns the sampler position)."""
  return pipeline.make_train_iterator(
      config.data, global_batch_size=config.batch_size, start_step=start_step,
      process_index=jax.process_index(), process_count=jax.process_count(),
      num_local_devices=jax.local_device_count())


def evaluators(config, model, *, workdir, writer, mesh, final_step):
  out = []
  for name, every in (config.get("evals") or {}).items():
    if name not in EVALUATORS:
      raise ValueError(f"config.evals.{name}: no such evaluator; known: {sorted(EVALUATORS)}")
    if every:
      out.append(EVALUATORS[name](every=every, model=model, config=config,
                                  data=EvalData(config.data), mesh=mesh, workdir=workdir,
                                  writer=writer, final_step=final_step))
  return out


def build_task(config, workdir, *, start_step, writer, mesh):
  """The pretraining task of `config` (configs/pretrain.py) for avjax.loop.run."""
  train_iter = train_iterator(config, start_step)
  first = next(train_iter)
  snippets = train_iter.snippets_per_epoch
  model = av.build_model(config.model)
  schedule = optim.make_schedule(config, snippets)
  tx = optim.adam(config, schedule)
  num_steps = optim.total_steps(config, snippets)

  def meta(step):
    return dict(step=int(step), sampler_group=int(train_iter.sampler_position(step)),
                k=int(config.data.k), batch_size=int(config.batch_size))

  def finish(state, step):
    del step
    checkpoint.export_backbones(f"{workdir}/export", {"params": state["params"],
                                                      "batch_stats": state["batch_stats"]},
                                config.model)
    return state

  return loop.Task(
      train_iter=train_iter, first_batch=first, num_steps=num_steps,
      init=functools.partial(pretrain_step.init_state, model=model, tx=tx,
                             video_shape=(1,) + first["video"].shape[1:],
                             audio_shape=(1,) + first["audio"].shape[1:]),
      update=functools.partial(pretrain_step.update_step, model=model, tx=tx,
                               schedule=schedule, loss_config=config.loss,
                               remat=config.model.get("remat", "none")),
      describe=describe, meta=meta, finish=finish,
      evaluators=evaluators(config, model, workdir=workdir, writer=writer, mesh=mesh,
                            final_step=num_steps),
      counters=lambda: dict(skipped_records=getattr(train_iter, "num_skipped", 0),
                            left_out_titles=len(getattr(train_iter, "left_out", ()))))


def evaluate_workdir(workdir, *, steps=None, overrides=None, write=True):
  """Restores checkpoints of a pretraining workdir and runs the discrepancy evaluation.

  Args:
    workdir: holds config.json and checkpoints/.
    steps: list of checkpoint steps; None: the latest; "all": every kept checkpoint.
    overrides: dict of discrepancy.default_config() fields to change.
    write: write discrepancy.json, scalars and figures into the workdir.
  Returns:
    The list of step entries.
  """
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
    data = EvalData(config.data)
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


def train_and_evaluate(config, workdir, *, max_steps=None):
  """Pretrains (or resumes) in `workdir`; returns the final state once the schedule is
  complete (and the backbones are exported to WORKDIR/export), else None."""
  return loop.run(build_task, config, workdir, max_steps=max_steps,
                  defaults=pretrain_config_file.get_config())
