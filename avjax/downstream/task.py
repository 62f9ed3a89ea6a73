"""Fine-tuning or linear evaluation of f (video) or g (audio), the task avjax.loop runs.

  python -m avjax.finetune --config=configs/downstream/ucf101.py:data=data/ucf101_prep \
      --config.init=runs/k16/export --workdir=runs/k16/ucf101_split1

Protocol (paper Sections 4.1 and 7.2; avjax.downstream.config): classifier = backbone +
global average pooling + (dropout) + linear layer, SGD with momentum and weight decay,
warm-up then cosine. Test: softmax predictions averaged over 30 views (video: 10 clips x
3 crops) or 10 (audio: 10 clips), top-1 into WORKDIR/results.json. `mode=linear` trains
the linear layer alone (downstream.config.MODES).
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from avjax import console
from avjax import fileio
from avjax import loop
from avjax import optim
from avjax import resume
from avjax import sharding
from avjax import validate
from avjax.downstream import config as downstream_config
from avjax.downstream import input as downstream_input
from avjax.downstream import model as model_lib

RESULTS = "results.json"


# ---------------------------------------------------------------------------
# State, update step, evaluation step.


def init_state(rng, backbone, *, model, tx, input_shape):
  """A fresh state; the backbone's variables replaced by `backbone` when given.

  Called under jit with replicated out_shardings, so it is built in place on every device.
  """
  init_rng, state_rng = jax.random.split(rng)
  variables = model.init(init_rng, jnp.zeros(input_shape, jnp.float32), train=False)
  params = dict(variables["params"])
  batch_stats = dict(variables.get("batch_stats", {}))
  if backbone is not None:
    cast = lambda new, old: new.astype(old.dtype)
    params["encoder"] = jax.tree.map(cast, backbone["params"], params["encoder"])
    if "encoder" in batch_stats:
      batch_stats["encoder"] = jax.tree.map(cast, backbone["batch_stats"], batch_stats["encoder"])
  return optim.new_state(params, batch_stats, tx, state_rng)


def update_step(state, batch, *, model, tx, schedule, kind, accum_steps=1):
  """One SGD step of cross-entropy over the global batch. Pure; jitted with donated state.

  With accum_steps > 1 the batch is processed as that many micro-batches in sequence
  (lax.scan) and their gradients averaged: the same step in 1/accum_steps of the
  activation memory. BatchNorm then normalizes over each micro-batch, as per-GPU
  BatchNorm does in a multi-GPU run of the paper's batch of 96.
  """
  step_rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

  def grads_of(params, batch_stats, micro, rng):
    def loss_fn(params):
      logits, updates = model.apply(
          {"params": params, "batch_stats": batch_stats}, micro[kind], train=True,
          mutable=["batch_stats"], rngs={"dropout": rng})
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, micro["label"]).mean()
      return loss, (updates["batch_stats"], logits)
    (loss, (new_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == micro["label"])
    return grads, new_stats, loss, accuracy

  params = state["params"]
  if accum_steps == 1:
    grads, batch_stats, loss, accuracy = grads_of(params, state["batch_stats"], batch, step_rng)
  else:
    # Micro-batch i takes rows i, i + k, i + 2k, ...: every device keeps an equal share
    # of each micro-batch, so no data moves between devices.
    micro = jax.tree.map(lambda x: jnp.swapaxes(
        x.reshape((x.shape[0] // accum_steps, accum_steps) + x.shape[1:]), 0, 1), batch)

    def body(carry, xs):
      grads, batch_stats, loss, accuracy = carry
      i, mb = xs
      g, batch_stats, l, a = grads_of(params, batch_stats, mb, jax.random.fold_in(step_rng, i))
      return (jax.tree.map(jnp.add, grads, g), batch_stats, loss + l, accuracy + a), None

    zeros = (jax.tree.map(jnp.zeros_like, params), state["batch_stats"],
             jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
    (grads, batch_stats, loss, accuracy), _ = jax.lax.scan(
        body, zeros, (jnp.arange(accum_steps), micro))
    grads = jax.tree.map(lambda g: g / accum_steps, grads)
    loss, accuracy = loss / accum_steps, accuracy / accum_steps

  new_state, norms = optim.apply_gradients(state, grads, tx, batch_stats)
  return new_state, dict(loss=loss, accuracy=accuracy, learning_rate=schedule(state["step"]),
                         **norms)


def average_view_predictions(logits):
  """[B, V, K] logits of V views per clip -> [B, K] mean of the views' softmax (Section 4.1)."""
  return jnp.mean(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), axis=1)


def eval_step(state, batch, *, model, kind):
  """Sums over the (padded) global test batch: clip top-1 over averaged views, view top-1."""
  apply_fn = lambda x: model.apply(
      {"params": state["params"], "batch_stats": state["batch_stats"]}, x, train=False)
  views = batch[kind]
  b, v = views.shape[:2]
  logits = apply_fn(views.reshape((b * v,) + views.shape[2:])).reshape(b, v, -1)
  probs = average_view_predictions(logits)
  label, mask = batch["label"], batch["mask"]
  correct = (jnp.argmax(probs, -1) == label) * mask
  view_correct = jnp.mean(jnp.argmax(logits, -1) == label[:, None], axis=1) * mask
  return dict(correct=jnp.sum(correct), view_correct=jnp.sum(view_correct),
              count=jnp.sum(mask))


# ---------------------------------------------------------------------------
# The task.


class TestEvaluator:
  """Top-1 of the test split, clip-level (averaged views) and per view.

  Runs every `every` steps (config.eval_every_steps; 0: only at the end) and once more
  at the end of the schedule for results.json, unless it just ran at that step.
  """

  def __init__(self, config, info, evaluate, mesh, writer):
    """`evaluate`: eval_step with its model and kind bound."""
    self.config, self.info, self.mesh, self.writer = config, info, mesh, writer
    self.every = int(config.get("eval_every_steps") or 0)
    self._step_fn = jax.jit(evaluate, out_shardings=sharding.replicated(mesh))
    self.last = (None, None)  # (step, (top1, view_top1))

  def __call__(self, state, step):
    if self.last[0] == step:
      return self.last[1]
    c = self.config
    totals = dict(correct=0.0, view_correct=0.0, count=0.0)
    batches = downstream_input.test_batches(
        c.data, c.split, batch_size=sharding.local_batch_size(c.eval_batch_size),
        num_test=self.info["num_test"], process_index=jax.process_index(),
        process_count=jax.process_count())
    views = downstream_config.views_per_clip(c.data)
    bar = console.progress(batches, desc=f"test step {step}: {views} views per clip",
                           unit="batch", leave=False,
                           total=math.ceil(self.info["num_test"] / c.eval_batch_size),
                           disable=jax.process_index() != 0)
    for batch in bar:
      out = jax.device_get(self._step_fn(state, sharding.host_to_global(batch, self.mesh)))
      for k in totals:
        totals[k] += float(out[k])
    if totals["count"] != self.info["num_test"]:
      raise RuntimeError(f"evaluated {totals['count']:.0f} test clips, expected "
                         f"{self.info['num_test']}")
    top1 = totals["correct"] / totals["count"]
    view_top1 = totals["view_correct"] / totals["count"]
    self.writer.write_scalars(step, {"test/top1": top1, "test/view_top1": view_top1})
    logging.info("step %d: test top-1 %.4f over %d clips (%d views each; single view %.4f)",
                 step, top1, totals["count"], views, view_top1)
    self.last = (step, (top1, view_top1))
    return top1, view_top1


def describe(m):
  return f"loss {m['loss']:.4f}  acc {m['accuracy']:.3f}  lr {m['learning_rate']:.2e}"


def _initial_backbone(config, kind, abstract_encoder, mesh):
  """The backbone variables to start from (replicated on the mesh), or None."""
  backbone = model_lib.load_backbone(config, kind)
  if backbone is None:
    return None
  model_lib.check_backbone(backbone, abstract_encoder, config.init or config.init_torch)
  # Every host holds the same weights; each places them on its own devices.
  replicated = sharding.replicated(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_callback(
      np.shape(x), replicated, lambda idx, x=np.asarray(x): x[idx]), backbone)


def build_task(config, workdir, *, start_step, writer, mesh):
  """The fine-tuning task of `config` (avjax.downstream.config, as configs/downstream/*.py
  override it) for avjax.loop.run, which has checked the config's numbers and batch sizes
  (avjax.validate); what only this task knows (the mode) is checked here, first."""
  validate.raise_problems(downstream_config.problems(config))
  kind = config.data.kind
  info = downstream_input.describe(config.data, config.split)  # checks the data first
  # A resumed run reseeds the stream (order and augmentations) by its step.
  train_iter = downstream_input.train_dataset(
      config.data, config.split, batch_size=sharding.local_batch_size(config.batch_size),
      seed=config.data.seed + start_step, process_index=jax.process_index(),
      process_count=jax.process_count()).as_numpy_iterator()
  num_steps = optim.total_steps(config, info["num_train"])
  logging.info("%s split %s: %d classes, %d train / %d test clips; %d steps of %d (%s)",
               config.dataset, config.split, info["num_classes"], info["num_train"],
               info["num_test"], num_steps, config.batch_size, config.mode)

  # The architecture follows the export; its weights are read only for a fresh start (a
  # resumed run has them in its checkpoint).
  model_config = model_lib.model_config_for(config, model_lib.export_model_config(config))
  first = next(train_iter)
  input_shape = (1,) + first[kind].shape[1:]
  accum_steps = config.get("grad_accum_steps", 1)

  def functions():
    model = model_lib.build_classifier(config, info["num_classes"], model_config)
    schedule = optim.make_schedule(config, info["num_train"])
    # Linear evaluation (mode=linear) trains the classifier alone: the encoder is frozen.
    tx = optim.sgd(config, schedule, frozen=("encoder",) if config.mode == "linear" else ())
    return (
        functools.partial(init_state, model=model, tx=tx, input_shape=input_shape),
        functools.partial(update_step, model=model, tx=tx, schedule=schedule, kind=kind,
                          accum_steps=accum_steps),
        functools.partial(eval_step, model=model, kind=kind))
  init, update, evaluate = sharding.reused(
      ("finetune", model_config.to_dict(), config.get("dropout", 0.0), config.mode,
       config.optimizer.to_dict(), info["num_classes"], info["num_train"], num_steps,
       config.batch_size, accum_steps, kind, input_shape), functions)
  backbone = None
  if not start_step:
    abstract = jax.eval_shape(init, jax.random.key(0), None)
    backbone = _initial_backbone(config, kind, {
        "params": abstract["params"]["encoder"],
        "batch_stats": abstract["batch_stats"].get("encoder", {})}, mesh)
  test = TestEvaluator(config, info, evaluate, mesh, writer)

  def finish(state, step):
    top1, view_top1 = test(state, step)
    results = dict(
        dataset=config.dataset, split=int(config.split), mode=config.mode,
        init=config.get("init", ""), init_torch=config.get("init_torch", ""),
        top1=top1, view_top1=view_top1, num_test=int(info["num_test"]),
        views_per_clip=downstream_config.views_per_clip(config.data),
        num_train=int(info["num_train"]), num_classes=int(info["num_classes"]),
        step=int(step), encoder=model_config[kind].to_dict(), dtype=model_config.dtype)
    # A restart allowed to change the run (resume=allow_changes, e.g. another init) is
    # named here: these numbers did not all come from the config above.
    changes = [e for e in resume.read_history(workdir) if e.get("run_fields_changed")]
    if changes:
      results["resumed_with_changes"] = changes
    if jax.process_index() == 0:
      fileio.write_json(os.path.join(workdir, RESULTS), results)
    return results

  return loop.Task(
      train_iter=train_iter, first_batch=first, num_steps=num_steps,
      init=init, init_args=(backbone,),
      update=update,
      describe=describe, finish=finish, evaluators=[test] if test.every else [],
      meta=lambda step: dict(step=int(step), num_train=int(info["num_train"])))


def train_and_evaluate(config, workdir, *, max_steps=None):
  """Fine-tunes (or resumes) in `workdir`, then tests; returns the results dict written to
  WORKDIR/results.json, or None when stopped before the end of the schedule."""
  known = config.get("dataset") in downstream_config.PROTOCOLS
  return loop.run(build_task, config, workdir, max_steps=max_steps,
                  defaults=downstream_config.protocol_config(config.dataset) if known else None)
