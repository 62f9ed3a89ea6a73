"""The training loop that pretraining and fine-tuning share: one loop, tasks plug into it.

Read top to bottom: mesh -> where the run starts (latest checkpoint) -> the task (input,
model, optimizer, pure update step; it checks its config and data) -> only then the
workdir (config.json, log file, checkpoints, events) -> state built sharded -> restore or
init -> loop (compile, step, log, evaluate, checkpoint, preemption) -> the task's finish
(export, test). A task (avjax.pretrain, avjax.downstream.task) is plain data: the loop owns
the mesh, the jit, the checkpoints, SIGTERM and the console; the task owns what is learned.

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
from avjax import console
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


class _Log:
  """Per-step console line, TensorBoard scalars and metrics.jsonl, every `every` steps.

  Rates and the ETA count from the end of the first (compiling) step and leave out the
  time spent in evaluations and checkpoint saves; the ETA adds the evaluations still to
  come at the duration each last took ("+ evaluations" until one has run).
  """

  def __init__(self, writer, task, config, stop):
    self.writer, self.task, self.config, self.stop = writer, task, config, stop
    self.every = int(config.log_every_steps)
    self.started = None  # time the first step finished (compile excluded from rates)
    self.steps, self.paused = 0, 0.0  # since `started`
    self.t0, self.window_steps, self.window_paused, self.data_wait = None, 0, 0.0, 0.0
    self.eval_seconds = {}  # evaluator index -> seconds of its last run
    self.eval_total = 0.0

  def compiled(self):
    self.started = self.t0 = time.time()

  def pause(self, seconds):
    self.paused += seconds
    self.window_paused += seconds

  def _evals_left(self, step):
    """(seconds of the evaluations still to come, whether some are not timed yet)."""
    left, untimed = 0.0, False
    for i, evaluate in enumerate(self.task.evaluators):
      if evaluate.every:
        # Runs at multiples of `every` in [step, stop] (this step's comes after its line)
        # and at the last step.
        runs = self.stop // evaluate.every - (step - 1) // evaluate.every
        runs += int(self.stop % evaluate.every != 0)
        left += runs * self.eval_seconds.get(i, 0.0)
        untimed |= runs > 0 and i not in self.eval_seconds
    return left, untimed

  def __call__(self, step, measurements, force=False):
    if self.started is not None:
      self.steps += 1
      self.window_steps += 1
    if step % self.every and not force:
      return
    m = {k: float(v) for k, v in jax.device_get(measurements).items()}
    check_finite(m, step)
    now = time.time()
    rate, eta = float("nan"), "?"
    if self.window_steps:
      rate = (self.window_steps * self.config.batch_size
              / max(now - self.t0 - self.window_paused, 1e-9))
      per_step = (now - self.started - self.paused) / self.steps
      evals, untimed = self._evals_left(step)
      eta = console.duration((self.stop - step) * per_step + evals)
      eta += " + evaluations" if untimed else ""
    m["data_wait_sec"] = self.data_wait
    if np.isfinite(rate):  # unknown on the first step's line
      m.update(samples_per_sec=rate, step_time_sec=self.config.batch_size / rate)
    self.writer.write_scalars(step, m)
    self.writer.write_line(step, m)
    logging.info("step %d/%d  %s  %s samples/s  ETA %s", step, self.task.num_steps,
                 self.task.describe(m), f"{rate:.1f}" if np.isfinite(rate) else "?", eta)
    self.t0, self.window_steps, self.window_paused, self.data_wait = now, 0, 0.0, 0.0


def _log_parameters(params):
  """The parameter table to the log file; one count per module on the console."""
  logging.info("parameters:\n%s", parameter_overview.get_parameter_overview(
      params, include_stats=False), extra=console.FILE_ONLY)
  counts = {name: sum(int(np.size(x)) for x in jax.tree.leaves(sub))
            for name, sub in params.items()}
  logging.info("parameters: %s; total %s (table in the log file)",
               ", ".join(f"{name} {n:,}" for name, n in counts.items()),
               f"{sum(counts.values()):,}")


def _start(task, config, ckpt, start_step, mesh, writer):
  """The state to train: restored from the latest checkpoint, or freshly initialised."""
  abstract, shardings = sharding.replicated_state(task.init, mesh, *task.init_args)
  if start_step:
    logging.info("restoring the checkpoint of step %d...", start_step)
    state, meta = ckpt.restore(checkpoint.abstract_like(abstract, shardings))
    logging.info("resumed from step %d (%s)", start_step, json.dumps(meta))
  else:
    logging.info("initialising the model (compiling its initialiser)...")
    state = sharding.init_state(task.init, jax.random.PRNGKey(config.seed), shardings,
                                *task.init_args)
    if jax.process_index() == 0:
      _log_parameters(state["params"])
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
  mesh = sharding.make_mesh()
  if config.batch_size % jax.device_count():
    raise ValueError(f"batch_size {config.batch_size} does not divide over "
                     f"{jax.device_count()} devices")
  # Nothing is written into the workdir until the task is built: a config or dataset that
  # fails its checks leaves no config.json, log, checkpoints/ or events behind. The
  # writer opens its files on the first write.
  writer = metrics_lib.MetricWriter(
      workdir, jsonl_path=os.path.join(workdir, metrics_lib.METRICS_FILE))
  ckpt = task = None
  try:
    start_step = _latest_step(workdir)
    task = build_task(config, workdir, start_step=start_step, writer=writer, mesh=mesh)
    _open_workdir(workdir, config)
    ckpt = checkpoint.Checkpointer(workdir, every_steps=config.checkpoint_every_steps,
                                   keep=config.keep_checkpoints,
                                   keep_every_steps=config.get("keep_every_steps", 0))
    state, shardings = _start(task, config, ckpt, start_step, mesh, writer)
    step_fn = sharding.jit_update(task.update, mesh, shardings)
    state, step = _train(task, config, state, step_fn, start_step, max_steps, ckpt, mesh,
                         writer)
  finally:
    if task is not None and hasattr(task.train_iter, "close"):
      task.train_iter.close()
    if ckpt is not None:
      ckpt.close()
    writer.flush()
  if step < task.num_steps:
    return None
  result = task.finish(state, step)
  writer.close()
  return result


def _latest_step(workdir):
  """The step of the latest checkpoint in `workdir`, 0 if none; creates nothing."""
  if not os.path.isdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)):
    return 0
  ckpt = checkpoint.Checkpointer(workdir, every_steps=1)
  try:
    return ckpt.latest_step() or 0
  finally:
    ckpt.close()


def _open_workdir(workdir, config):
  """The workdir, its log file and config.json, once the task has checked its inputs."""
  os.makedirs(workdir, exist_ok=True)
  console.attach_log(workdir, jax.process_index())
  logging.info("workdir %s", workdir)
  if jax.process_index() == 0:
    fileio.write_json(os.path.join(workdir, CONFIG_FILE), json.loads(config.to_json()))


def _train(task, config, state, step_fn, step, max_steps, ckpt, mesh, writer):
  """The loop proper; returns (state, last step)."""
  stop = min(task.num_steps, max_steps or task.num_steps)
  log = _Log(writer, task, config, stop)
  pending = None  # measurements of the previous step, checked one step behind
  batch = task.first_batch
  start, first = time.time(), step
  with sigterm_flag() as sigterm:
    while step < stop:
      if log.started is None:
        logging.info("compiling the update step...")
      state, measurements = step_fn(state, sharding.host_to_global(batch, mesh))
      step += 1
      if log.started is None:
        jax.block_until_ready(measurements)
        logging.info("compiled the update step and ran step %d in %s", step,
                     console.duration(time.time() - start))
      # The host never waits on the device: the previous step is checked now.
      if pending is not None:
        check_finite(jax.device_get(pending[1]), pending[0])
      pending = (step, measurements)
      log(step, measurements, force=step == stop)
      if log.started is None:
        log.compiled()

      for i, evaluate in enumerate(task.evaluators):
        if evaluate.every and (step % evaluate.every == 0 or step == stop):
          t0 = time.time()
          evaluate(state, step)
          log.eval_seconds[i] = time.time() - t0
          log.eval_total += log.eval_seconds[i]
          log.pause(log.eval_seconds[i])

      t0 = time.time()
      preempted = ckpt.reached_preemption(step, sigterm["raised"])
      if ckpt.should_save(step) or step == stop or preempted:
        check_finite(jax.device_get(measurements), step)
        ckpt.save(step, state, task.meta(step), force=True)
      log.pause(time.time() - t0)
      if preempted:
        logging.warning("preempted at step %d: checkpoint saved, exiting", step)
        break

      if step < stop:
        t0 = time.time()
        batch = next(task.train_iter)
        log.data_wait += time.time() - t0
  if step > first:
    logging.info("trained steps %d-%d in %s (evaluations %s)", first + 1, step,
                 console.duration(time.time() - start),
                 console.duration(log.eval_total) if task.evaluators else "none")
  return state, step
