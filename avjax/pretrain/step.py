"""The pretraining update: f, g and their heads under Adam on the NCE loss (paper Eq. 1).

Pure functions of plain data, free of TensorFlow: the training loop jits them
(avjax.pretrain.task) and so does the step benchmark (avjax.bench.step), on hosts that
have only JAX. State is a dict: step, params, batch_stats, opt_state, rng.
`default_config` holds what the update learns with: model, loss and optimizer.
"""

import jax
import ml_collections

from avjax import losses
from avjax import optim
from avjax.models import av
from avjax.models import remat as remat_lib


def default_config():
  """Model, loss and optimizer of pretraining (paper Sections 3, 7.2).

  The unnormalized loss without temperature (Section 3; normalize=True with a temperature
  is Table 2's ablation); Adam with lr 1e-4 warming up linearly to 0.002 over the first
  epoch, then a cosine (Section 7.2).
  """
  return ml_collections.ConfigDict(dict(
      model=av.default_config(),
      loss=dict(normalize=False, temperature=1.0),
      optimizer=dict(lr_init=1e-4, lr_peak=2e-3, lr_end=0.0, warmup_epochs=1.0, b1=0.9,
                     b2=0.999, eps=1e-8, grad_clip_norm=0.0)))


def init_state(rng, *, model, tx, video_shape, audio_shape):
  """A fresh train state, plain data: step, params, batch_stats, opt_state, rng.

  Called under jit with replicated out_shardings, so it is built in place on every device.
  """
  variables = av.init_variables(model, rng, video_shape, audio_shape)
  _, state_rng = jax.random.split(rng)
  return optim.new_state(variables["params"], variables.get("batch_stats", {}), tx, state_rng)


def update_step(state, batch, *, model, tx, schedule, loss_config, remat="none"):
  """One step of Adam on Eq. 1 over the global batch. Pure; jitted with donated state."""
  # Model randomness (none in the default model) would come from fold_in(rng, step).
  step_rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

  def forward(variables, video, audio):
    return model.apply(variables, video, audio, train=True, mutable=["batch_stats"],
                       rngs={"dropout": step_rng})
  forward = remat_lib.apply(forward, remat)

  def loss_fn(params):
    (z_video, z_audio), updates = forward(
        {"params": params, "batch_stats": state["batch_stats"]}, batch["video"], batch["audio"])
    loss = losses.nce_loss(z_video, z_audio, normalize=loss_config.normalize,
                           temperature=loss_config.temperature)
    return loss, (updates["batch_stats"], z_video, z_audio)

  (loss, (batch_stats, z_video, z_audio)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state["params"])
  new_state, norms = optim.apply_gradients(state, grads, tx, batch_stats)
  return new_state, dict(
      loss=loss, learning_rate=schedule(state["step"]), **norms,
      **losses.nce_metrics(jax.lax.stop_gradient(z_video), jax.lax.stop_gradient(z_audio)))
