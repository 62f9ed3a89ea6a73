"""Pretraining: f, g and their heads with the NCE loss (paper Eq. 1) on k-snippet groups.

Read top to bottom: mesh -> input -> model and optimizer -> sharded state -> update step ->
restore -> loop (log, evaluate, checkpoint) -> export. Data flows one way; the update step
is a pure function `update_step(state, batch) -> (state, measurements)`.
"""

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from avjax import checkpoint
from avjax import fileio
from avjax import losses
from avjax import sharding
from avjax.models import av
from avjax.models import fused_norm

# One JSON line per logged step, beside the TensorBoard events (plots read it without TF).
METRICS_FILE = "metrics.jsonl"


class NonFiniteError(FloatingPointError):
  """A non-finite loss or gradient; the run stops, the last good checkpoint stays."""


# ---------------------------------------------------------------------------
# Optimizer.


def steps_per_epoch(config, snippets_per_epoch):
  """An epoch is sum_n M_n snippets (paper Section 4.1), i.e. this many global batches."""
  return max(1, int(np.ceil(snippets_per_epoch / config.batch_size)))


def total_steps(config, snippets_per_epoch):
  if config.get("total_steps", 0):
    return int(config.total_steps)
  return int(np.ceil(config.num_epochs * snippets_per_epoch / config.batch_size))


def make_schedule(config, snippets_per_epoch):
  """Linear warm-up from lr_init to lr_peak over warmup_epochs, then cosine (Section 7.2)."""
  opt = config.optimizer
  steps = total_steps(config, snippets_per_epoch)
  warmup = min(steps - 1, int(round(opt.warmup_epochs * steps_per_epoch(config, snippets_per_epoch))))
  return optax.warmup_cosine_decay_schedule(
      init_value=opt.lr_init, peak_value=opt.lr_peak, warmup_steps=max(warmup, 0),
      decay_steps=max(steps, 1), end_value=opt.get("lr_end", 0.0))


def make_optimizer(config, schedule):
  opt = config.optimizer
  chain = []
  if opt.get("grad_clip_norm", 0):
    chain.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  chain.append(optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps))
  return optax.chain(*chain)


# ---------------------------------------------------------------------------
# State and update step.


def init_state(rng, *, model, tx, video_shape, audio_shape):
  """A fresh train state, plain data: step, params, batch_stats, opt_state, rng.

  Called under jit with replicated out_shardings, so it is built in place on every device.
  """
  init_rng, state_rng = jax.random.split(rng)
  variables = model.init(init_rng, jnp.zeros(video_shape, jnp.float32),
                         jnp.zeros(audio_shape, jnp.float32), train=False)
  params = variables["params"]
  return dict(step=jnp.zeros((), jnp.int32), params=params,
              batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
              rng=state_rng)


def _save_conv_outputs(prim, *_, **params):
  # Also the per-channel statistics of model.norm="fused" (a few floats per channel), so
  # its backward pass recomputes only the normalization, not the statistics' reduction.
  return prim.name == "conv_general_dilated" or (
      prim.name == "name" and params.get("name") == fused_norm.STATS_NAME)


# What the backward pass keeps of the forward (config.model.remat). "convs": only the conv
# outputs; BatchNorm/ReLU, cheap elementwise work, are recomputed. For the paper model the
# saved residuals drop from 1.62 to 0.24 GiB per sample (Flax's BatchNorm keeps float32
# intermediates), so larger per-device batches fit. See models/fused_norm.py for how it
# combines with model.norm="fused".
REMAT_POLICIES = {"none": None, "convs": _save_conv_outputs}


def update_step(state, batch, *, model, tx, schedule, loss_config, remat="none"):
  """One step of Adam on Eq. 1 over the global batch. Pure; jitted with donated state."""
  # Model randomness (none in the default model) would come from fold_in(rng, step).
  step_rng = jax.random.fold_in(state["rng"], state["step"])

  def forward(variables, video, audio):
    return model.apply(variables, video, audio, train=True, mutable=["batch_stats"],
                       rngs={"dropout": step_rng})
  if remat not in REMAT_POLICIES:
    raise ValueError(f"model.remat={remat!r}: expected one of {sorted(REMAT_POLICIES)}")
  if REMAT_POLICIES[remat] is not None:
    forward = jax.checkpoint(forward, policy=REMAT_POLICIES[remat])

  def loss_fn(params):
    (z_video, z_audio), updates = forward(
        {"params": params, "batch_stats": state["batch_stats"]}, batch["video"], batch["audio"])
    loss = losses.nce_loss(z_video, z_audio, normalize=loss_config.normalize,
                           temperature=loss_config.temperature)
    return loss, (updates["batch_stats"], z_video, z_audio)

  (loss, (batch_stats, z_video, z_audio)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state["params"])
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  measurements = dict(
      loss=loss,
      learning_rate=schedule(state["step"]),
      grad_norm=optax.global_norm(grads),
      param_norm=optax.global_norm(params),
      update_norm=optax.global_norm(updates),
      **losses.nce_metrics(jax.lax.stop_gradient(z_video), jax.lax.stop_gradient(z_audio)))
  new_state = dict(step=state["step"] + 1, params=params, batch_stats=batch_stats,
                   opt_state=opt_state, rng=state["rng"])
  return new_state, measurements


def jit_update_step(mesh, state_shardings, **kwargs):
  """`update_step` jitted for `mesh`: state replicated and donated, batch split over "data"."""
  return jax.jit(
      functools.partial(update_step, **kwargs),
      in_shardings=(state_shardings, sharding.batch_sharding(mesh)),
      out_shardings=(state_shardings, sharding.replicated(mesh)),
      donate_argnums=(0,))


def check_finite(measurements, step):
  """Raises NonFiniteError naming the step if the loss or a norm is not finite."""
  bad = [k for k in ("loss", "grad_norm", "param_norm") if not np.isfinite(measurements[k])]
  if bad:
    raise NonFiniteError(f"step {step}: non-finite {', '.join(bad)} "
                         f"({', '.join(f'{k}={measurements[k]}' for k in bad)}); stopping. "
                         "The last checkpoint saved before this step is kept.")


# ---------------------------------------------------------------------------
# The run.


def _log_line(step, num_steps, m, rate, eta_s):
  eta = time.strftime("%H:%M:%S", time.gmtime(max(eta_s, 0))) if np.isfinite(eta_s) else "?"
  return (f"step {step}/{num_steps}  loss {m['loss']:.4f}  lr {m['learning_rate']:.2e}  "
          f"s+ {m['sim_positive']:.2f} s- {m['sim_negative']:.2f}  "
          f"top1 v2a {m['top1_v2a']:.3f}  {rate:.1f} samples/s  ETA {eta}")


def train_and_evaluate(config, workdir, *, max_steps=None):
  """Trains (or resumes) in `workdir`; exports the backbones at the end.

  Args:
    config: a ConfigDict from configs/pretrain.py.
    workdir: checkpoints, TensorBoard events, config.json and the export go here.
    max_steps: stop after this global step (tests and interruption drills); the run
      is not exported then unless it reached the end of the schedule.
  Returns:
    The final state (a dict of global jax.Arrays).
  """
  # Imported here: the update step above must import on a host with only JAX (no
  # TensorFlow, no clu), where the step benchmark runs.
  from clu import metric_writers, parameter_overview, periodic_actions  # pylint: disable=g-import-not-at-top
  from avjax.data import pipeline  # pylint: disable=g-import-not-at-top

  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    fileio.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)

  # --- Mesh.
  mesh = sharding.make_mesh()
  replicated = sharding.replicated(mesh)
  if config.batch_size % jax.device_count():
    raise ValueError(f"batch_size {config.batch_size} does not divide over "
                     f"{jax.device_count()} devices")

  # --- Checkpoints (to know where the input stream starts).
  ckpt = checkpoint.Checkpointer(workdir, every_steps=config.checkpoint_every_steps,
                                 keep=config.keep_checkpoints,
                                 keep_every_steps=config.get("keep_every_steps", 0))
  start_step = ckpt.latest_step() or 0

  # --- Input: the sampler stream is a pure function of the group position, so a
  # resumed run starts at group start_step * (B / k) (paper Section 3 policy).
  groups_per_batch = config.batch_size // config.data.k
  train_iter = pipeline.make_train_iterator(
      config.data, global_batch_size=config.batch_size,
      start_group=start_step * groups_per_batch,
      process_index=jax.process_index(), process_count=jax.process_count(),
      num_local_devices=jax.local_device_count())
  snippets = train_iter.snippets_per_epoch
  num_steps = total_steps(config, snippets)
  first = next(train_iter)

  # --- Model and optimizer.
  model = av.build_model(config.model)
  schedule = make_schedule(config, snippets)
  tx = make_optimizer(config, schedule)

  # --- State, built sharded (replicated) from the start: never materialised on a host.
  init = functools.partial(init_state, model=model, tx=tx,
                           video_shape=(1,) + first["video"].shape[1:],
                           audio_shape=(1,) + first["audio"].shape[1:])
  abstract_state = jax.eval_shape(init, jax.random.PRNGKey(0))
  state_shardings = jax.tree.map(lambda _: replicated, abstract_state)

  # --- Update step.
  step_fn = jit_update_step(mesh, state_shardings, model=model, tx=tx, schedule=schedule,
                            loss_config=config.loss, remat=config.model.get("remat", "none"))

  # --- Restore or initialise.
  if start_step:
    state, meta = ckpt.restore(checkpoint.abstract_like(abstract_state, state_shardings))
    logging.info("resumed from step %d (sampler group %d)", start_step, meta["sampler_group"])
  else:
    state = jax.jit(init, out_shardings=state_shardings)(jax.random.PRNGKey(config.seed))
    if jax.process_index() == 0:
      logging.info("parameters:\n%s", parameter_overview.get_parameter_overview(
          state["params"], include_stats=False))
    writer.write_hparams({k: v for k, v in _flat(config).items()
                          if isinstance(v, (int, float, str, bool))})

  # --- Loop.
  stop = min(num_steps, max_steps or num_steps)
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer,
                                           every_steps=config.log_every_steps)
  evaluators = _evaluators(config, workdir, writer)
  pending = None  # measurements of the previous step, checked one step behind
  batch = first
  step = start_step
  t_log, samples_since_log, data_wait = time.time(), 0, 0.0
  # On any exit, a NonFiniteError included, wait for in-flight saves: the last good
  # checkpoint must be complete on disk.
  try:
    while step < stop:
      state, measurements = step_fn(state, sharding.host_to_global(batch, mesh))
      step += 1
      if pending is not None:
        check_finite(jax.device_get(pending[1]), pending[0])
      pending = (step, measurements)
      report(step)
      samples_since_log += config.batch_size

      if step % config.log_every_steps == 0 or step == stop:
        m = jax.device_get(measurements)
        check_finite(m, step)
        now = time.time()
        rate = samples_since_log / (now - t_log)
        m = {k: float(v) for k, v in m.items()}
        m.update(samples_per_sec=rate, data_wait_sec=data_wait,
                 step_time_sec=(now - t_log) * config.batch_size / samples_since_log)
        writer.write_scalars(step, m)
        if jax.process_index() == 0:
          with open(os.path.join(workdir, METRICS_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(step=step, **m)) + "\n")
        logging.info(_log_line(step, num_steps, m, rate,
                               (num_steps - step) * config.batch_size / max(rate, 1e-9)))
        t_log, samples_since_log, data_wait = now, 0, 0.0

      for every, evaluate in evaluators:
        if step % every == 0 or step == stop:
          with report.timed("eval"):
            evaluate(model, state, step)

      preempted = ckpt.reached_preemption(step)
      if ckpt.should_save(step) or step == stop or preempted:
        check_finite(jax.device_get(measurements), step)
        ckpt.save(step, state, _meta(config, step, groups_per_batch), force=True)
      if preempted:
        logging.warning("preempted at step %d: checkpoint saved, exiting", step)
        break

      if step < stop:
        t0 = time.time()
        with report.timed("data"):
          batch = next(train_iter)
        data_wait += time.time() - t0
  finally:
    train_iter.close()
    ckpt.close()
  writer.flush()
  if step >= num_steps:
    checkpoint.export_backbones(os.path.join(workdir, "export"),
                                {"params": state["params"], "batch_stats": state["batch_stats"]},
                                config.model)
  return state


def _meta(config, step, groups_per_batch):
  return dict(step=int(step), sampler_group=int(step * groups_per_batch),
              k=int(config.data.k), batch_size=int(config.batch_size))


def _flat(config, prefix=""):
  out = {}
  for k, v in config.items():
    if hasattr(v, "items"):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _evaluators(config, workdir, writer):
  """(every_steps, fn(model, state, step)) for the periodic held-out evaluations.

  Each entry of `config.evals` names a module avjax.<name> with
  `evaluate(model, state, step, *, config, workdir, writer)`.
  """
  out = []
  for name, every in (config.get("evals") or {}).items():
    if every:
      module = __import__(f"avjax.{name}", fromlist=["evaluate"])
      out.append((int(every), functools.partial(module.evaluate, config=config,
                                                workdir=workdir, writer=writer)))
  return out
