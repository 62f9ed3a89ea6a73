r"""Downstream evaluation: fine-tuning or linear probing of f (video) or g (audio).

  python -m avjax.finetune --config=configs/downstream/ucf101.py:data=data/ucf101_prep \
      --config.init=runs/k16/export --workdir=runs/k16/ucf101_split1 \
      [--config.split=1] [--config.mode=finetune|linear]

Protocol (paper Sections 4.1 and 7.2): classifier = backbone + global average pooling +
(dropout) + linear layer; SGD with momentum 0.9 and weight decay 1e-4, the learning rate
warming up linearly from 1e-3 to 0.2 over 25 epochs then cosine, batch 96, 150 epochs
(UCF101) or 200 (HMDB51, ESC-50). Test: softmax predictions averaged over 30 views (video:
10 clips x 3 crops) or 10 (audio: 10 clips), top-1 into WORKDIR/results.json.
`mode=linear` freezes the backbone (its BatchNorm uses the pretrained statistics) and
trains only the linear layer on the pooled features.

Read top to bottom like avjax/train.py: mesh -> input -> model and optimizer -> sharded
state (with the pretrained backbone) -> update and eval steps -> restore -> loop -> test.
Restarting the same command in the same workdir resumes from the latest checkpoint.
"""

import functools
import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from avjax import checkpoint
from avjax import fileio
from avjax import sharding
from avjax import train
from avjax.models import av
from avjax.models import heads

RESULTS = "results.json"
METRICS_FILE = train.METRICS_FILE
BACKBONE = {"video": "video_encoder", "audio": "audio_encoder"}  # names inside an export
MODES = ("finetune", "linear")



# ---------------------------------------------------------------------------
# The paper's downstream protocol (Sections 4.1 and 7.2), shared by configs/downstream/*.py.

VIDEO_DATASETS = ("ucf101", "hmdb51")


def protocol_config(dataset, arg, *, num_epochs, eval_batch_size):
  """The config of `configs/downstream/<dataset>.py` from its parsed args.

  SGD with momentum 0.9 and weight decay 1e-4, lr 1e-3 -> 0.2 linearly over the first 25
  epochs then cosine, batch 96; `arg` has data, split, mode, init, runlocal and, for video,
  res ("default": scale jitter [181, 226], crop 158; "high": Table 5's sizes scaled like
  pretraining's 224 -> 200).
  """
  from avjax.data import downstream_input  # pylint: disable=g-import-not-at-top
  video = dataset in VIDEO_DATASETS
  config = ml_collections.ConfigDict()
  config.dataset = dataset
  config.split = arg.split
  config.mode = arg.mode
  config.init = arg.init            # export dir (python -m avjax.export)
  config.init_torch = ""            # or a torchvision-layout state dict (.npz, .pth)
  config.init_torch_prefix = ""     # key prefix of the encoder inside that state dict
  config.seed = 0

  config.data = downstream_input.default_config(dataset)
  config.data.data_dir = arg.data
  res = arg.get("res", "default")
  if res == "high" and video:
    config.data.scale_min, config.data.scale_max = 213, 266
    config.data.crop_size = 200
    config.data.test_short_side = 213
  elif res != "default":
    raise ValueError(f"res={res!r}: expected 'default'" + (" or 'high'" if video else ""))

  config.model = av.default_config()  # the export's architecture replaces this one
  config.dropout = 0.0
  config.batch_size = 96
  config.eval_batch_size = eval_batch_size  # test clips per batch (x 30 or 10 views)
  config.num_epochs = num_epochs
  config.total_steps = 0       # >0 overrides num_epochs
  # Micro-batches per step (gradients averaged): fits the batch on fewer accelerators,
  # e.g. 8 on one GPU gives 8 x 12, the per-GPU batch of an 8-GPU run.
  config.grad_accum_steps = 1
  config.optimizer = ml_collections.ConfigDict(dict(
      lr_init=1e-3, lr_peak=0.2, lr_end=0.0, warmup_epochs=25.0, momentum=0.9,
      weight_decay=1e-4, nesterov=False))
  config.log_every_steps = 50 if video else 10
  config.checkpoint_every_steps = 1000 if video else 500
  config.keep_checkpoints = 2
  config.eval_every_steps = 0  # >0: also test every N steps

  if arg.runlocal:  # tiny encoders, clips and step count: a minute on a CPU
    config.model.video.name = "r2plus1d_tiny"
    config.model.audio.name = "resnet_audio_tiny"
    config.model.dtype = "float32"
    if video:
      config.data.num_frames = 4
      config.data.scale_min, config.data.scale_max = 20, 24
      config.data.crop_size = 16
      config.data.test_short_side = 20
    else:
      config.data.clip_seconds = 0.5
    config.data.test_clips = 2
    config.data.shuffle_buffer = 16
    config.batch_size = 8
    config.eval_batch_size = 8
    config.total_steps = 4
    config.optimizer.lr_peak = 0.05
    config.optimizer.warmup_epochs = 1.0
    config.log_every_steps = 2
    config.checkpoint_every_steps = 2
  return config

# ---------------------------------------------------------------------------
# Model.


class Classifier(nn.Module):
  """Backbone f or g, global average pooling, dropout, linear layer.

  Attributes:
    encoder: the backbone; its variables live under "encoder".
    num_classes: outputs of the linear layer "classifier".
    dropout_rate: dropout on the pooled features (0: none).
    frozen: linear-probe mode: the backbone runs in inference mode (pretrained
      BatchNorm statistics) and no gradient flows into it.
  """
  encoder: nn.Module
  num_classes: int
  dropout_rate: float = 0.0
  frozen: bool = False

  def features(self, x, train=False):
    """Pooled backbone features (N, C), float32."""
    features = heads.global_average_pool(self.encoder(x, train=train and not self.frozen))
    return jax.lax.stop_gradient(features) if self.frozen else features

  @nn.compact
  def __call__(self, x, train=False):
    x = self.features(x, train=train)
    if self.dropout_rate:
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=jnp.float32, name="classifier")(x)


def model_config_for(config, export_config=None):
  """config.model with the encoder's entry taken from the export when there is one.

  The compute dtype always comes from config.model.dtype (an export made in bf16 can be
  evaluated in float32 and vice versa).
  """
  model_config = ml_collections.ConfigDict(config.model.to_dict())
  kind = config.data.kind
  if export_config is not None:
    wanted = dict(config.model[kind])
    model_config[kind] = ml_collections.ConfigDict(dict(export_config[kind]))
    if wanted.get("name") != export_config[kind].get("name"):
      logging.info("model.%s.name %r replaced by the export's %r", kind, wanted.get("name"),
                   export_config[kind].get("name"))
  return model_config


def build_classifier(config, num_classes, model_config):
  encoder = av.build_encoder(config.data.kind, model_config)
  return Classifier(encoder=encoder, num_classes=num_classes,
                    dropout_rate=float(config.get("dropout", 0.0)),
                    frozen=config.mode == "linear")


# ---------------------------------------------------------------------------
# Initial backbone weights: an export, a torchvision-layout checkpoint, or none.


def export_model_config(config):
  """The model config stored with the export `config.init`, or None without one."""
  if config.get("init") and config.get("init_torch"):
    raise ValueError("config.init and config.init_torch are both set; pick one")
  if not config.get("init"):
    return None
  path = os.path.join(config.init, checkpoint.EXPORT_CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{config.init}: not an avjax export (no "
                            f"{checkpoint.EXPORT_CONFIG}); make one with python -m avjax.export")
  return fileio.read_json(path)


def load_backbone(config, kind):
  """{"params", "batch_stats"} of the backbone from config.init or config.init_torch, or None."""
  if config.get("init"):
    variables, _ = checkpoint.load_export(config.init)
    name = BACKBONE[kind]
    if name not in variables["params"]:
      raise ValueError(f"{config.init}: export has no {name} (has "
                       f"{sorted(variables['params'])})")
    return {"params": variables["params"][name],
            "batch_stats": variables.get("batch_stats", {}).get(name, {})}
  if config.get("init_torch"):
    from avjax.models import convert  # pylint: disable=g-import-not-at-top
    overrides = dict(config.model[kind])
    arch = overrides.pop("name")
    state_dict = convert.load_state_dict(config.init_torch)
    variables = convert.torchvision_to_flax(state_dict, arch, model_kwargs=overrides,
                                            prefix=config.get("init_torch_prefix", ""))
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  return None


def check_backbone(loaded, expected, source):
  """Raises a ValueError naming each variable whose path or shape differs from the model's."""
  def flat(tree):
    return {jax.tree_util.keystr(p): tuple(np.shape(x))
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  got, want = flat(loaded), flat(expected)
  problems = [f"missing {k} {want[k]}" for k in sorted(want.keys() - got.keys())]
  problems += [f"unexpected {k} {got[k]}" for k in sorted(got.keys() - want.keys())]
  problems += [f"{k} has shape {got[k]}, the model wants {want[k]}"
               for k in sorted(got.keys() & want.keys()) if got[k] != want[k]]
  if problems:
    shown = "\n  ".join(problems[:20])
    raise ValueError(f"{source}: the backbone does not fit the model ({len(problems)} "
                     f"problem(s)):\n  {shown}")


# ---------------------------------------------------------------------------
# Optimizer (Section 7.2).


def make_optimizer(config, schedule):
  """SGD with momentum and weight decay (torch-style: decay added to the gradient).

  In linear mode only the classifier is trained; the backbone gets zero updates (no
  weight decay either).
  """
  opt = config.optimizer
  sgd = optax.chain(optax.add_decayed_weights(opt.weight_decay),
                    optax.sgd(schedule, momentum=opt.momentum, nesterov=opt.get("nesterov", False)))
  if config.mode == "finetune":
    return sgd
  if config.mode == "linear":
    labels = lambda params: {k: "frozen" if k == "encoder" else "trained" for k in params}
    return optax.multi_transform({"trained": sgd, "frozen": optax.set_to_zero()}, labels)
  raise ValueError(f"config.mode {config.mode!r}: expected one of {MODES}")


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
    params["encoder"] = jax.tree.map(lambda new, old: new.astype(old.dtype),
                                     backbone["params"], params["encoder"])
    if "encoder" in batch_stats:
      batch_stats["encoder"] = jax.tree.map(lambda new, old: new.astype(old.dtype),
                                            backbone["batch_stats"], batch_stats["encoder"])
  return dict(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
              opt_state=tx.init(params), rng=state_rng)


def update_step(state, batch, *, model, tx, schedule, kind, accum_steps=1):
  """One SGD step of cross-entropy over the global batch. Pure; jitted with donated state.

  With accum_steps > 1 the batch is processed as that many micro-batches in sequence
  (lax.scan) and their gradients averaged: the same step in 1/accum_steps of the
  activation memory. BatchNorm then normalizes over each micro-batch, as per-GPU
  BatchNorm does in a multi-GPU run of the paper's batch of 96.
  """
  step_rng = jax.random.fold_in(state["rng"], state["step"])

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

  updates, opt_state = tx.update(grads, state["opt_state"], params)
  params = optax.apply_updates(params, updates)
  measurements = dict(
      loss=loss,
      accuracy=accuracy,
      learning_rate=schedule(state["step"]),
      grad_norm=optax.global_norm(grads),
      param_norm=optax.global_norm(params),
      update_norm=optax.global_norm(updates))
  new_state = dict(step=state["step"] + 1, params=params, batch_stats=batch_stats,
                   opt_state=opt_state, rng=state["rng"])
  return new_state, measurements


def average_view_predictions(logits):
  """[B, V, K] logits of V views per clip -> [B, K] mean of the views' softmax (Section 4.1)."""
  return jnp.mean(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), axis=1)


def predict_views(apply_fn, views):
  """Averaged predictions [B, K] of clips' views [B, V, ...]; apply_fn maps [N, ...] -> logits."""
  b, v = views.shape[:2]
  logits = apply_fn(views.reshape((b * v,) + views.shape[2:]))
  return average_view_predictions(logits.reshape(b, v, -1))


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
# The run.


def _check_config(config):
  if config.mode not in MODES:
    raise ValueError(f"config.mode {config.mode!r}: expected one of {MODES}")
  n = jax.device_count()
  for name in ("batch_size", "eval_batch_size"):
    if config[name] % n:
      raise ValueError(f"config.{name} {config[name]} does not divide over {n} devices")
  k = config.get("grad_accum_steps", 1)
  if k < 1 or config.batch_size % (n * k):
    raise ValueError(f"config.batch_size {config.batch_size} does not split into "
                     f"grad_accum_steps={k} micro-batches over {n} devices")


def train_and_evaluate(config, workdir, *, max_steps=None):
  """Fine-tunes (or resumes) in `workdir`, then tests; returns the results dict.

  Args:
    config: a ConfigDict from configs/downstream/*.py.
    workdir: checkpoints, TensorBoard events, config.json and results.json go here.
    max_steps: stop after this global step (tests and interruption drills); the test
      set is evaluated only when the schedule has finished.
  Returns:
    The results dict written to WORKDIR/results.json, or None if stopped early.
  """
  # Imported here: the model and steps above must import where only JAX is installed.
  from clu import metric_writers, parameter_overview, periodic_actions  # pylint: disable=g-import-not-at-top
  from avjax.data import downstream_input  # pylint: disable=g-import-not-at-top

  _check_config(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    fileio.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  kind = config.data.kind

  # --- Mesh.
  mesh = sharding.make_mesh()
  replicated = sharding.replicated(mesh)
  batch_sharding = sharding.batch_sharding(mesh)

  # --- Checkpoints (to know where the input stream starts).
  info = downstream_input.describe(config.data, config.split)  # checks the data first
  ckpt = checkpoint.Checkpointer(workdir, every_steps=config.checkpoint_every_steps,
                                 keep=config.keep_checkpoints)
  start_step = ckpt.latest_step() or 0

  # --- Input. A resumed run reseeds the stream (order and augmentations) by its step.
  local_batch = sharding.local_batch_size(config.batch_size)
  train_iter = downstream_input.train_dataset(
      config.data, config.split, batch_size=local_batch,
      seed=config.data.seed + start_step, process_index=jax.process_index(),
      process_count=jax.process_count()).as_numpy_iterator()
  num_steps = train.total_steps(config, info["num_train"])
  logging.info("%s split %s: %d classes, %d train / %d test clips; %d steps of %d (%s)",
               config.dataset, config.split, info["num_classes"], info["num_train"],
               info["num_test"], num_steps, config.batch_size, config.mode)

  # --- Model and optimizer. The architecture follows the export; its weights are read
  # only for a fresh start (a resumed run has them in its checkpoint).
  export_config = export_model_config(config)
  backbone = None if start_step else load_backbone(config, kind)
  model_config = model_config_for(config, export_config)
  model = build_classifier(config, info["num_classes"], model_config)
  schedule = train.make_schedule(config, info["num_train"])
  tx = make_optimizer(config, schedule)

  # --- State, built sharded (replicated) from the start.
  first = next(train_iter)
  input_shape = (1,) + first[kind].shape[1:]
  init = functools.partial(init_state, model=model, tx=tx, input_shape=input_shape)
  abstract_state = jax.eval_shape(init, jax.random.PRNGKey(0), None)
  state_shardings = jax.tree.map(lambda _: replicated, abstract_state)

  # --- Update and eval steps.
  step_fn = jax.jit(
      functools.partial(update_step, model=model, tx=tx, schedule=schedule, kind=kind,
                        accum_steps=config.get("grad_accum_steps", 1)),
      in_shardings=(state_shardings, batch_sharding),
      out_shardings=(state_shardings, replicated),
      donate_argnums=(0,))
  eval_fn = jax.jit(functools.partial(eval_step, model=model, kind=kind),
                    in_shardings=(state_shardings, batch_sharding), out_shardings=replicated)

  # --- Restore or initialise.
  if start_step:
    state, _ = ckpt.restore(checkpoint.abstract_like(abstract_state, state_shardings))
    logging.info("resumed from step %d", start_step)
  else:
    if backbone is not None:
      expected = {"params": abstract_state["params"]["encoder"],
                  "batch_stats": abstract_state["batch_stats"].get("encoder", {})}
      check_backbone(backbone, expected, config.init or config.init_torch)
      # Every host holds the same weights; each places them on its own devices.
      backbone = jax.tree.map(
          lambda x: jax.make_array_from_callback(np.shape(x), replicated,
                                                 lambda idx, x=np.asarray(x): x[idx]),
          backbone)
    state = jax.jit(init, out_shardings=state_shardings)(
        jax.random.PRNGKey(config.seed), backbone)
    if jax.process_index() == 0:
      logging.info("parameters:\n%s", parameter_overview.get_parameter_overview(
          state["params"], include_stats=False))
    writer.write_hparams(_scalars(config))

  def evaluate(step):
    totals = dict(correct=0.0, view_correct=0.0, count=0.0)
    batches = downstream_input.test_batches(
        config.data, config.split, batch_size=sharding.local_batch_size(config.eval_batch_size),
        num_test=info["num_test"], process_index=jax.process_index(),
        process_count=jax.process_count())
    for batch in batches:
      out = jax.device_get(eval_fn(state, sharding.host_to_global(batch, mesh)))
      for k in totals:
        totals[k] += float(out[k])
    if totals["count"] != info["num_test"]:
      raise RuntimeError(f"evaluated {totals['count']:.0f} test clips, expected "
                         f"{info['num_test']}")
    top1 = totals["correct"] / totals["count"]
    view_top1 = totals["view_correct"] / totals["count"]
    writer.write_scalars(step, {"test/top1": top1, "test/view_top1": view_top1})
    logging.info("step %d: test top-1 %.4f over %d clips (%d views each; single view %.4f)",
                 step, top1, totals["count"], downstream_input.views_per_clip(config.data),
                 view_top1)
    return top1, view_top1

  # --- Loop.
  stop = min(num_steps, max_steps or num_steps)
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer,
                                           every_steps=config.log_every_steps)
  batch, step = first, start_step
  pending = None  # measurements of the previous step, checked one step behind
  t_log, samples_since_log = time.time(), 0
  while step < stop:
    state, measurements = step_fn(state, sharding.host_to_global(batch, mesh))
    step += 1
    if pending is not None:
      train.check_finite(jax.device_get(pending[1]), pending[0])
    pending = (step, measurements)
    report(step)
    samples_since_log += config.batch_size

    if step % config.log_every_steps == 0 or step == stop:
      m = {k: float(v) for k, v in jax.device_get(measurements).items()}
      train.check_finite(m, step)
      now = time.time()
      m["samples_per_sec"] = samples_since_log / (now - t_log)
      writer.write_scalars(step, m)
      if jax.process_index() == 0:
        with open(os.path.join(workdir, METRICS_FILE), "a", encoding="utf-8") as f:
          f.write(json.dumps(dict(step=step, **m)) + "\n")
      logging.info("step %d/%d  loss %.4f  acc %.3f  lr %.2e  %.1f samples/s", step,
                   num_steps, m["loss"], m["accuracy"], m["learning_rate"],
                   m["samples_per_sec"])
      t_log, samples_since_log = now, 0

    if config.get("eval_every_steps") and step % config.eval_every_steps == 0 and step < num_steps:
      with report.timed("eval"):
        evaluate(step)

    preempted = ckpt.reached_preemption(step)
    if ckpt.should_save(step) or step == stop or preempted:
      train.check_finite(jax.device_get(measurements), step)
      ckpt.save(step, state, dict(step=int(step), num_train=int(info["num_train"])),
                force=True)
    if preempted:
      logging.warning("preempted at step %d: checkpoint saved, exiting", step)
      break
    if step < stop:
      with report.timed("data"):
        batch = next(train_iter)

  ckpt.close()
  results = None
  if step >= num_steps:
    top1, view_top1 = evaluate(step)
    results = dict(
        dataset=config.dataset, split=int(config.split), mode=config.mode,
        init=config.get("init", ""), init_torch=config.get("init_torch", ""),
        top1=top1, view_top1=view_top1, num_test=int(info["num_test"]),
        views_per_clip=downstream_input.views_per_clip(config.data),
        num_train=int(info["num_train"]), num_classes=int(info["num_classes"]),
        step=int(step), encoder=model_config[kind].to_dict(), dtype=model_config.dtype)
    if jax.process_index() == 0:
      fileio.write_json(os.path.join(workdir, RESULTS), results)
  writer.flush()
  return results


def _scalars(config, prefix=""):
  """Flat {dotted name: value} of a config's scalar fields (TensorBoard hparams)."""
  out = {}
  for k, v in config.items():
    if hasattr(v, "items"):
      out.update(_scalars(v, f"{prefix}{k}."))
    elif isinstance(v, (int, float, str, bool)):
      out[f"{prefix}{k}"] = v
  return out


def main(argv):
  """absl main: `python -m avjax.finetune --config=... --workdir=...`."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import app  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  flags_ = flags.FLAGS
  from avjax.data import hide_gpus_from_tensorflow  # pylint: disable=g-import-not-at-top
  hide_gpus_from_tensorflow()
  logging.info("workdir %s", os.path.abspath(flags_.workdir))
  results = train_and_evaluate(flags_.config, flags_.workdir)
  if results is not None:
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
  # Flags are defined only when run as a program, so importing this module (finetune_all,
  # tests) defines none.
  from absl import app as _app  # pylint: disable=g-import-not-at-top
  from absl import flags as _flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags as _config_flags  # pylint: disable=g-import-not-at-top
  _flags.DEFINE_string("workdir", None, "Checkpoints, logs, config.json and results.json.")
  _config_flags.DEFINE_config_file("config", None, "Downstream config file.", lock_config=True)
  _flags.mark_flags_as_required(["config", "workdir"])
  # Before any other JAX call: join the other processes of a multi-host launch.
  sharding.maybe_initialize_distributed()
  _app.run(main)
