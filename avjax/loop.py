"""The training loop that pretraining and fine-tuning share: one loop, tasks plug into it.

Read top to bottom: mesh -> where the run starts (latest checkpoint) -> the task (input,
model, optimizer, pure update step; it checks its config and data) -> only then the
workdir (config.json, log file, checkpoints, events) -> state built sharded -> restore or
init -> loop (compile, step, log, evaluate, checkpoint, preemption) -> the task's finish
(export, test). A task (avjax.pretrain.task, avjax.downstream.task) is plain data: the loop owns
the mesh, the jit, the checkpoints, SIGTERM and the console; the task owns what is learned.

On any exit, an error included, the loop waits for in-flight checkpoint saves, so the last
good checkpoint is complete on disk.

Before anything is written to the workdir the config is validated (avjax.validate). A
restart resumes only with the config fields that define the run (resume.run_fields:
data, model, loss, optimizer, batch) unchanged; otherwise it refuses with the diff, or, with
`--config.resume=allow_changes`, resumes and records the change. Every change of
config.json is appended to config_history.jsonl before it is replaced. A checkpoint that
cannot be restored is set aside (checkpoints/<step>.damaged) with one log line naming the
step and the cause, and the run resumes from the newest intact one.
"""

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
from absl import logging
from clu import parameter_overview

from avjax import checkpoint
from avjax import console
from avjax import dirlock
from avjax import fileio
from avjax import metrics as metrics_lib
from avjax import resume
from avjax import sharding
from avjax import validate
from avjax import workdir as workdir_lib
from avjax.data import titles as titles_lib

FINISHED_FILE = "finished.json"  # written once the whole schedule has been trained
# What a preempted run leaves behind, kept referenced: tearing it down (the input
# pipeline's threads, the compiled step, the buffers) took seconds to tens of seconds after
# the save; the command exits first (exit_promptly).
_LEFT_RUNNING = []


class NonFiniteError(FloatingPointError):
  """A non-finite loss or gradient; the run stops, the last good checkpoint stays."""


# Errors whose message says all (what, where, what to do): the commands print it and exit
# with status 1, no traceback.
STOPPING_ERRORS = (validate.ConfigError, resume.ResumeConfigError,
                   resume.NoIntactCheckpointError, titles_lib.BadDatasetError,
                   dirlock.LockedError, workdir_lib.WorkdirError,
                   checkpoint.CheckpointSaveError)


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
    counters: () -> {name: number} of host-side counts logged with the measurements
      (e.g. skipped_records).
    fingerprint: the identity of the data the task reads (titles_lib.fingerprint), saved
      with each checkpoint; a restart on other data is refused (resume.check_data).
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
  counters: Callable = None
  fingerprint: Any = None


def check_finite(measurements, step):
  """Raises NonFiniteError naming the step if the loss or a norm is not finite."""
  bad = [k for k in ("loss", "grad_norm", "param_norm") if not np.isfinite(measurements[k])]
  if bad:
    raise NonFiniteError(f"step {step}: non-finite {', '.join(bad)} "
                         f"({', '.join(f'{k}={measurements[k]}' for k in bad)}); stopping. "
                         "The last checkpoint saved before this step is kept.")


class Interrupted(KeyboardInterrupt):
  """Ctrl-C (SIGINT) stopped the run after saving a checkpoint of the step it arrived in;
  the same command resumes. Commands exit with status 130, as for any Ctrl-C."""

  def __init__(self, step):
    super().__init__(f"interrupted at step {step}: checkpoint saved; the same command "
                     "resumes")
    self.step = step


@contextlib.contextmanager
def sigterm_flag():
  """Yields a dict whose "raised" turns True on SIGTERM or a first SIGINT, while the loop
  runs; "signal" says which. A second SIGINT aborts at once (KeyboardInterrupt).

  SLURM, Kubernetes and TPU maintenance announce preemption with SIGTERM; a user at the
  terminal presses Ctrl-C. Both save a checkpoint at the current step, then stop. With
  several processes no Python handler is installed: JAX's own preemption notice (which
  the checkpoint manager syncs across processes) must see the signal.
  """
  flag = {"raised": False, "signal": None}
  if jax.process_count() > 1:
    yield flag
    return

  def handler(signum, frame):
    del frame
    if signum == signal.SIGINT and flag["signal"] == signal.SIGINT:
      raise KeyboardInterrupt  # the second Ctrl-C: no save, now
    if signum == signal.SIGINT:
      logging.warning("Ctrl-C: saving a checkpoint at this step and stopping (Ctrl-C again "
                      "to abort at once, without it)")
    else:
      logging.warning("received signal %d: saving a checkpoint and exiting", signum)
    flag.update(raised=True, signal=flag["signal"] or signum)
  previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield flag
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


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
    if self.task.counters is not None:
      m.update({k: float(v) for k, v in self.task.counters().items()})
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
    state, meta = ckpt.restore(checkpoint.abstract_like(abstract, shardings), step=start_step)
    logging.info("resumed from step %d (%s)", start_step, json.dumps(meta))
  else:
    logging.info("initialising the model (compiling its initialiser)...")
    state = sharding.init_state(task.init, jax.random.key(config.seed), shardings,
                                *task.init_args)
    if jax.process_index() == 0:
      _log_parameters(state["params"])
    writer.write_hparams({k: v for k, v in resume.flat_fields(config).items()
                          if isinstance(v, (int, float, str, bool))})
  return state, shardings


def run(build_task, config, workdir, *, max_steps=None, defaults=None):
  """Trains (or resumes) the task `build_task` makes in `workdir`; returns its finish().

  Args:
    build_task: (config, workdir, *, start_step, writer, mesh) -> Task.
    config: the run's ConfigDict (batch_size, seed, log_every_steps,
      checkpoint_every_steps, keep_checkpoints, keep_every_steps, resume).
    workdir: config.json, metrics.jsonl, TensorBoard events and checkpoints go here.
    max_steps: stop after this global step (tests and interruption drills); finish()
      runs only when the schedule is complete.
    defaults: the task's default config: a field that an older checkpoint does not
      know counts as its default when a restart's config is compared with it.
  Returns:
    task.finish(state, step) when the schedule completed, else None (preempted, or
    max_steps reached).
  Raises:
    validate.ConfigError: a bad config (nothing is written), or a schedule of 0 steps.
    ResumeConfigError: a restart that changes fields defining the run.
    NoIntactCheckpointError: every checkpoint is damaged.
    Interrupted: Ctrl-C arrived; the checkpoint of that step is saved.
  """
  validate.check(config, device_count=jax.device_count())
  workdir = os.path.abspath(workdir)
  with workdir_lib.lock(workdir, "training run"):
    return _run(build_task, config, workdir, max_steps, defaults)


def _run(build_task, config, workdir, max_steps, defaults):
  """The body of run(), holding the workdir's lock."""
  mesh = sharding.make_mesh()
  # Nothing is written into the workdir until the task is built: a config, restart or
  # dataset that fails its checks leaves no config.json, log, checkpoints/ or events
  # behind (a damaged checkpoint is only moved aside). The writer opens its files on the
  # first write.
  writer = metrics_lib.MetricWriter(
      workdir, jsonl_path=os.path.join(workdir, metrics_lib.METRICS_FILE))
  ckpt = task = None
  preempted = False
  try:
    if os.path.isdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)):
      ckpt = _checkpointer(workdir, config)
    start_step, meta = resume.newest_readable(ckpt) if ckpt is not None else (0, None)
    run_changes = resume.check_resume(config, workdir, start_step, meta, defaults)
    task = build_task(config, workdir, start_step=start_step, writer=writer, mesh=mesh)
    data_changes = resume.check_data(config, workdir, start_step, meta, task.fingerprint)
    validate.check_steps(task.num_steps, config)
    workdir_lib.open_workdir(workdir, config, start_step, run_changes, data_changes)
    if ckpt is None:
      ckpt = _checkpointer(workdir, config)
    task, state, shardings, start_step = _restore(build_task, task, config, workdir, ckpt,
                                                  start_step, mesh, writer)
    writer.drop_lines_after(start_step)  # steps the checkpoint lost are trained again
    step_fn = sharding.jit_update(task.update, mesh, shardings)
    state, step, preempted = _train(task, config, state, step_fn, start_step, max_steps,
                                    ckpt, mesh, writer)
  finally:
    if ckpt is not None:
      ckpt.close()  # waits for in-flight saves: the last checkpoint is complete on disk
    writer.flush()
    # After a preemption everything is left as it is: its teardown can take tens of
    # seconds of the grace period (the process exits right after, exit_promptly).
    if preempted:
      _LEFT_RUNNING.append((task, state, step_fn, writer, ckpt))
    elif task is not None:
      _close(task.train_iter)
  if preempted == signal.SIGINT:
    raise Interrupted(step)
  if preempted:
    logging.warning("preempted at step %d: checkpoint saved, exiting", step)
    return None
  if step < task.num_steps:
    return None
  result = task.finish(state, step)
  if jax.process_index() == 0:
    fileio.write_json(os.path.join(workdir, FINISHED_FILE),
                      dict(step=int(step), num_steps=int(task.num_steps)))
  writer.close()
  return result


def exit_promptly(code=0):
  """Ends the process at once, for the commands after a preemption's checkpoint is saved.

  The input pipeline's threads and the interpreter's teardown of TensorFlow and JAX took
  10-40 s after the save, more than some preemption grace periods allow.
  """
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  if jax.process_count() > 1:
    with contextlib.suppress(Exception):
      jax.distributed.shutdown()  # every process is exiting at the same step
  os._exit(code)  # pylint: disable=protected-access


def _close(iterator):
  if hasattr(iterator, "close"):
    iterator.close()


# ---------------------------------------------------------------------------
# Where a restart resumes: the newest intact checkpoint, with the same run config.


def _restore(build_task, task, config, workdir, ckpt, start_step, mesh, writer):
  """(task, state, shardings, start step): `task`'s state restored, or, when that
  checkpoint is damaged, the task rebuilt for the newest intact one."""
  while True:
    try:
      state, shardings = _start(task, config, ckpt, start_step, mesh, writer)
      return task, state, shardings, start_step
    except checkpoint.DamagedCheckpointError as e:
      _close(task.train_iter)
      resume.set_aside(ckpt, e)
      start_step, _ = resume.newest_readable(ckpt)
      task = build_task(config, workdir, start_step=start_step, writer=writer, mesh=mesh)


def _checkpointer(workdir, config):
  return checkpoint.Checkpointer(workdir, every_steps=config.checkpoint_every_steps,
                                 keep=config.keep_checkpoints,
                                 keep_every_steps=config.get("keep_every_steps", 0))


def _train(task, config, state, step_fn, step, max_steps, ckpt, mesh, writer):
  """The loop proper; returns (state, last step, preempted: the signal that stopped it, or
  True for a preemption announced to several processes, or False)."""
  stop = min(task.num_steps, max_steps or task.num_steps)
  log = _Log(writer, task, config, stop)
  # Saved with every checkpoint: what check_resume and check_data compare a restart with.
  identity = dict(run_config=resume.run_fields(config))
  if task.fingerprint is not None:
    identity["data_fingerprint"] = task.fingerprint
  preempted = False
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
        ckpt.save(step, state, dict(task.meta(step), **identity), force=True)
      log.pause(time.time() - t0)
      if preempted:
        preempted = sigterm["signal"] or True
        break

      if step < stop:
        t0 = time.time()
        batch = next(task.train_iter)
        log.data_wait += time.time() - t0
  if step > first:
    logging.info("trained steps %d-%d in %s (evaluations %s)", first + 1, step,
                 console.duration(time.time() - start),
                 console.duration(log.eval_total) if task.evaluators else "none")
  return state, step, preempted
