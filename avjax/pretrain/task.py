"""Pretraining, the task avjax.loop runs: hierarchical input, f/g/heads, Eq. 1, export.

`build_task` wires the parts of paper Sections 3 and 4.1 for the loop: the input stream
of k-snippet groups (resumed at the saved step), the model and Adam with the warm-up +
cosine schedule, the pure update step (avjax.pretrain.step), the evaluators named in
`config.evals`, and at the end the export of the backbones f and g. The run's defaults are
avjax.pretrain.config's.

  python -m avjax.main --config=configs/pretrain.py:dataset=data/movie,k=16 --workdir=runs/k16
"""

import functools

import jax

from avjax import checkpoint
from avjax import loop
from avjax import optim
from avjax import sharding
from avjax.data import pipeline
from avjax.data import titles as titles_lib
from avjax.evals import discrepancy
from avjax.models import av
from avjax.pretrain import config as pretrain_config
from avjax.pretrain import step as pretrain_step

# config.evals names evaluators; each entry is "name: every N steps" (0: off).
EVALUATORS = {"discrepancy": discrepancy.Evaluator}


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
                                  data=pipeline.EvalData(config.data), mesh=mesh, workdir=workdir,
                                  writer=writer, final_step=final_step))
  return out


def build_task(config, workdir, *, start_step, writer, mesh):
  """The pretraining task of `config` (avjax.pretrain.config, as configs/pretrain.py
  overrides it) for avjax.loop.run."""
  train_iter = train_iterator(config, start_step)
  first = next(train_iter)
  snippets = train_iter.snippets_per_epoch
  num_steps = optim.total_steps(config, snippets)
  video_shape = (1,) + first["video"].shape[1:]
  audio_shape = (1,) + first["audio"].shape[1:]

  def functions():
    model = av.build_model(config.model)
    schedule = optim.make_schedule(config, snippets)
    tx = optim.adam(config, schedule)
    return model, (
        functools.partial(pretrain_step.init_state, model=model, tx=tx,
                          video_shape=video_shape, audio_shape=audio_shape),
        functools.partial(pretrain_step.update_step, model=model, tx=tx, schedule=schedule,
                          loss_config=config.loss, remat=config.model.get("remat", "none")))
  model, (init, update) = sharding.reused(
      ("pretrain", config.model.to_dict(), config.loss.to_dict(),
       config.optimizer.to_dict(), config.batch_size, num_steps, snippets, video_shape,
       audio_shape), functions)

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
      init=init, update=update,
      describe=describe, meta=meta, finish=finish,
      evaluators=evaluators(config, model, workdir=workdir, writer=writer, mesh=mesh,
                            final_step=num_steps),
      counters=lambda: dict(skipped_records=getattr(train_iter, "num_skipped", 0),
                            left_out_titles=getattr(train_iter, "num_left_out", 0)),
      # The selected titles, those left out as unreadable included: a restart on other
      # titles, counts, splits or entries is refused (the stream and schedule would change).
      fingerprint=titles_lib.fingerprint(
          list(train_iter.titles) + [e for e, _ in getattr(train_iter, "left_out", ())]))


def train_and_evaluate(config, workdir, *, max_steps=None):
  """Pretrains (or resumes) in `workdir`; returns the final state once the schedule is
  complete (and the backbones are exported to WORKDIR/export), else None."""
  return loop.run(build_task, config, workdir, max_steps=max_steps,
                  defaults=pretrain_config.default_config())
