"""Training length, learning-rate schedule and the optimizers of pretraining and fine-tuning.

An epoch is one pass over the examples (pretraining: sum_n M_n snippets, paper Section
4.1); the schedule warms up linearly from lr_init to lr_peak over warmup_epochs, then
decays with a cosine to lr_end (Section 7.2, both for pretraining and downstream).
Pretraining uses Adam (`adam`), fine-tuning SGD with momentum and weight decay (`sgd`),
both from config.optimizer and the schedule (Section 7.2). A train state is plain data:
step, params, batch_stats, opt_state and rng (`new_state`, `apply_gradients`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def steps_per_epoch(config, examples_per_epoch):
  """Global batches per epoch (at least 1)."""
  return max(1, int(np.ceil(examples_per_epoch / config.batch_size)))


def total_steps(config, examples_per_epoch):
  """config.total_steps if set (> 0), else num_epochs epochs of global batches."""
  if config.get("total_steps", 0):
    return int(config.total_steps)
  return int(np.ceil(config.num_epochs * examples_per_epoch / config.batch_size))


def make_schedule(config, examples_per_epoch):
  """Linear warm-up from lr_init to lr_peak over warmup_epochs, then cosine to lr_end."""
  opt = config.optimizer
  steps = total_steps(config, examples_per_epoch)
  warmup = min(steps - 1, int(round(opt.warmup_epochs
                                    * steps_per_epoch(config, examples_per_epoch))))
  return optax.warmup_cosine_decay_schedule(
      init_value=opt.lr_init, peak_value=opt.lr_peak, warmup_steps=max(warmup, 0),
      decay_steps=max(steps, 1), end_value=opt.get("lr_end", 0.0))


def adam(config, schedule):
  """Adam (pretraining, paper Section 7.2), optionally after global-norm gradient clipping."""
  opt = config.optimizer
  clip = [optax.clip_by_global_norm(opt.grad_clip_norm)] if opt.get("grad_clip_norm", 0) else []
  return optax.chain(*clip, optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps))


def sgd(config, schedule, *, frozen=()):
  """SGD with momentum and weight decay (fine-tuning, Section 7.2); torch-style: the decay is
  added to the gradient.

  Top-level parameter collections named in `frozen` get zero updates (and no weight decay):
  linear evaluation trains the classifier alone.
  """
  opt = config.optimizer
  tx = optax.chain(optax.add_decayed_weights(opt.weight_decay),
                   optax.sgd(schedule, momentum=opt.momentum, nesterov=opt.get("nesterov", False)))
  if not frozen:
    return tx
  labels = lambda params: {k: "frozen" if k in frozen else "trained" for k in params}
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def new_state(params, batch_stats, tx, rng):
  """A fresh train state; the key is kept as raw key data, as checkpoints store it."""
  return dict(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
              opt_state=tx.init(params), rng=jax.random.key_data(rng))


def apply_gradients(state, grads, tx, batch_stats):
  """The state after one optimizer step on `grads`, and the norms every step reports."""
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  norms = dict(grad_norm=optax.global_norm(grads), param_norm=optax.global_norm(params),
               update_norm=optax.global_norm(updates))
  return dict(state, step=state["step"] + 1, params=params, batch_stats=batch_stats,
              opt_state=opt_state), norms
