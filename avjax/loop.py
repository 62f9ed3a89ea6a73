"""The training loop that pretraining and fine-tuning share: one loop, tasks plug into it.

Read top to bottom: workdir and metrics -> mesh -> checkpoints (where the run starts) ->
the task (input, model, optimizer, pure update step) -> state built sharded -> restore or
init -> loop (step, log, evaluate, checkpoint, preemption) -> the task's finish (export,
test). A task (avjax.pretrain, avjax.downstream.task) is plain data: the loop owns the
mesh, the jit, the checkpoints, SIGTERM and the console; the task owns what is learned.

On any exit, an error included, the loop waits for in-flight checkpoint saves, so the last
good checkpoint is complete on disk.
"""

import contextlib
import dataclasses
import json
import os
import signal
import time
from typing import Any, Callable

import jax
import numpy as np
from absl import logging
from clu import parameter_overview

from avjax import checkpoint
from avjax import fileio
from avjax import metrics as metrics_lib
from avjax import sharding

CONFIG_FILE = "config.json"


class NonFiniteError(FloatingPointError):
  """A non-finite loss or gradient; the run stops, the last good checkpoint stays."""


@dataclasses.dataclass
class Task:
  """What the loop trains.

  Attributes:
    train_iter: host-local batches (dicts of numpy arrays) from the resumed step on; the
      loop closes it at the end if it has a close().
    first_batch: its first batch (the task read it to size the model).
    num_steps: steps of the whole schedule.
    init: (rng, *init_args) -> fresh state, a dict of arrays with a "step" entry; pure
      (jitted with replicated out_shardings).
    update: (state, batch) -> (state, measurements); pure (jitted, state donated).
      Measurements hold at least loss, learning_rate, grad_norm and param_norm.
    describe: measurements -> the task's part of the console line.
    meta: step -> JSON-able dict saved with each checkpoint.
    finish: (state, step) -> result, once the schedule is complete (export, test).
    evaluators: callables (state, step) with an `every` attribute (steps; 0: never),
      run every `every` steps and at the last step of the run.
  """
  train_iter: Any
  first_batch: dict
  num_steps: int
  init: Callable
  update: Callable
  describe: Callable
  meta: Callable
  finish: Callable
  evaluators: list = dataclasses.field(default_factory=list)
  init_args: tuple = ()  # arrays passed to init (e.g. pretrained weights), not closed over


def check_finite(measurements, step):
  """Raises NonFiniteError naming the step if the loss or a norm is not finite."""
  bad = [k for k in ("loss", "grad_norm", "param_norm") if not np.isfinite(measurements[k])]
  if bad:
    raise NonFiniteError(f"step {step}: non-finite {', '.join(bad)} "
                         f"({', '.join(f'{k}={measurements[k]}' for k in bad)}); stopping. "
                         "The last checkpoint saved before this step is kept.")


def flat_scalars(config, prefix=""):
  """{dotted name: value} of a config's scalar fields (TensorBoard hparams)."""
  out = {}
  for k, v in config.items():
    if hasattr(v, "items"):
      out.update(flat_scalars(v, f"{prefix}{k}."))
    elif isinstance(v, (int, float, str, bool)):
      out[f"{prefix}{k}"] = v
  return out


@contextlib.contextmanager
def sigterm_flag():
  """Yields a dict whose "raised" turns True on SIGTERM, while the loop runs.

  SLURM, Kubernetes and TPU maintenance announce preemption with SIGTERM. With several
  processes no Python handler is installed: JAX's own preemption notice (which the
  checkpoint manager syncs across processes) must see the signal.
  """
  flag = {"raised": False}
  if jax.process_count() > 1:
    yield flag
    return

  def handler(signum, frame):
    del frame
    logging.warning("received signal %d: saving a checkpoint and exiting", signum)
    flag["raised"] = True
  previous = signal.signal(signal.SIGTERM, handler)
  try:
    yield flag
  finally:
    signal.signal(signal.SIGTERM, previous)


def _eta(seconds):
  return time.strftime("%H:%M:%S", time.gmtime(max(seconds, 0))) if np.isfinite(seconds) else "?"


class _Log:
  """Per-step console line, TensorBoard scalars and metrics.jsonl, every `every` steps."""

  def __init__(self, writer, task, config):
    self.writer, self.task, self.config = writer, task, config
    self.every = int(config.log_every_steps)
    self.t0, self.samples, self.data_wait = time.time(), 0, 0.0

  def __call__(self, step, measurements, force=False):
    self.samples += self.config.batch_size
    if step % self.every and not force:
      return
    m = {k: float(v) for k, v in jax.device_get(measurements).items()}
    check_finite(m, step)
    now = time.time()
    rate = self.samples / max(now - self.t0, 1e-9)
    m.update(samples_per_sec=rate, data_wait_sec=self.data_wait,
             step_time_sec=self.config.batch_size / max(rate, 1e-9))
    self.writer.write_scalars(step, m)
    self.writer.write_line(step, m)
    eta = (self.task.num_steps - step) * self.config.batch_size / max(rate, 1e-9)
    logging.info("step %d/%d  %s  %.1f samples/s  ETA %s", step, self.task.num_steps,
                 self.task.describe(m), rate, _eta(eta))
    self.t0, self.samples, self.data_wait = now, 0, 0.0


def _start(task, config, ckpt, start_step, mesh, writer):
  """The state to train: restored from the latest checkpoint, or freshly initialised."""
  abstract, shardings = sharding.replicated_state(task.init, mesh, *task.init_args)
  if start_step:
    state, meta = ckpt.restore(checkpoint.abstract_like(abstract, shardings))
    logging.info("resumed from step %d (%s)", start_step, json.dumps(meta))
  else:
    state = sharding.init_state(task.init, jax.random.PRNGKey(config.seed), shardings,
                                *task.init_args)
    if jax.process_index() == 0:
      logging.info("parameters:\n%s", parameter_overview.get_parameter_overview(
          state["params"], include_stats=False))
    writer.write_hparams(flat_scalars(config))
  return state, shardings


def run(build_task, config, workdir, *, max_steps=None):
  """Trains (or resumes) the task `build_task` makes in `workdir`; returns its finish().

  Args:
    build_task: (config, workdir, *, start_step, writer, mesh) -> Task.
    config: the run's ConfigDict (batch_size, seed, log_every_steps,
      checkpoint_every_steps, keep_checkpoints, keep_every_steps).
    workdir: config.json, metrics.jsonl, TensorBoard events and checkpoints go here.
    max_steps: stop after this global step (tests and interruption drills); finish()
      runs only when the schedule is complete.
  Returns:
    task.finish(state, step) when the schedule completed, else None.
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    fileio.write_json(os.path.join(workdir, CONFIG_FILE), json.loads(config.to_json()))
  writer = metrics_lib.MetricWriter(
      workdir, jsonl_path=os.path.join(workdir, metrics_lib.METRICS_FILE))
  mesh = sharding.make_mesh()
  if config.batch_size % jax.device_count():
    raise ValueError(f"batch_size {config.batch_size} does not divide over "
                     f"{jax.device_count()} devices")
  ckpt = checkpoint.Checkpointer(workdir, every_steps=config.checkpoint_every_steps,
                                 keep=config.keep_checkpoints,
                                 keep_every_steps=config.get("keep_every_steps", 0))
  task = None
  try:
    start_step = ckpt.latest_step() or 0
    task = build_task(config, workdir, start_step=start_step, writer=writer, mesh=mesh)
    state, shardings = _start(task, config, ckpt, start_step, mesh, writer)
    step_fn = sharding.jit_update(task.update, mesh, shardings)
    state, step = _train(task, config, state, step_fn, start_step, max_steps, ckpt, mesh,
                         writer)
  finally:
    if task is not None and hasattr(task.train_iter, "close"):
      task.train_iter.close()
    ckpt.close()
    writer.flush()
  if step < task.num_steps:
    return None
  result = task.finish(state, step)
  writer.close()
  return result


def _train(task, config, state, step_fn, step, max_steps, ckpt, mesh, writer):
  """The loop proper; returns (state, last step)."""
  stop = min(task.num_steps, max_steps or task.num_steps)
  log = _Log(writer, task, config)
  pending = None  # measurements of the previous step, checked one step behind
  batch = task.first_batch
  with sigterm_flag() as sigterm:
    while step < stop:
      state, measurements = step_fn(state, sharding.host_to_global(batch, mesh))
      step += 1
      # The host never waits on the device: the previous step is checked now.
      if pending is not None:
        check_finite(jax.device_get(pending[1]), pending[0])
      pending = (step, measurements)
      log(step, measurements, force=step == stop)

      for evaluate in task.evaluators:
        if evaluate.every and (step % evaluate.every == 0 or step == stop):
          evaluate(state, step)

      preempted = ckpt.reached_preemption(step, sigterm["raised"])
      if ckpt.should_save(step) or step == stop or preempted:
        check_finite(jax.device_get(measurements), step)
        ckpt.save(step, state, task.meta(step), force=True)
      if preempted:
        logging.warning("preempted at step %d: checkpoint saved, exiting", step)
        break

      if step < stop:
        t0 = time.time()
        batch = next(task.train_iter)
        log.data_wait += time.time() - t0
  return state, step
