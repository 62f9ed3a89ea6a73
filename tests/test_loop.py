"""What the one training loop guarantees to every task it runs (pretraining, fine-tuning)."""

import os

import jax
import numpy as np
import pytest

import helpers
from avjax import checkpoint
from avjax import loop
from avjax.pretrain import task as pretrain
from avjax.configs import pretrain as pretrain_config_file
from avjax.configs.downstream import esc50
from avjax.downstream import task as finetune



class _Hooked:
  """A task's input with `hook(i, batch)` applied to its i-th batch."""

  def __init__(self, it, hook):
    self._it, self._hook, self._i = it, hook, 1

  def __iter__(self):
    return self

  def __next__(self):
    batch = self._hook(self._i, next(self._it))
    self._i += 1
    return batch

  def close(self):
    if hasattr(self._it, "close"):
      self._it.close()


def with_hook(build_task, hook):
  """`build_task` whose task feeds batches through `hook`."""
  def build(*args, **kwargs):
    task = build_task(*args, **kwargs)
    task.first_batch = hook(0, task.first_batch)
    task.train_iter = _Hooked(task.train_iter, hook)
    return task
  return build


def _pretraining(request):
  dataset = request.getfixturevalue("wide_tiny_dataset")
  # test_pretrain's settings: the group's runs share their jitted functions
  config = pretrain_config_file.get_config(f"dataset={dataset},runlocal,micro")
  config.data = helpers.tiny_data_config(dataset)  # 4 frames, 32x32 crops, k=2
  config.update(batch_size=16, total_steps=4, log_every_steps=1)
  return pretrain.build_task, config, "video"


def _finetuning(request):
  data = request.getfixturevalue("esc50_prepared")
  config = esc50.get_config(f"data={data},runlocal")
  return finetune.build_task, config, "audio"


TASKS = {"pretraining": _pretraining, "finetuning": _finetuning}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TASKS))
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(name, tmp_path,
                                                                             request):
  build_task, config, key = TASKS[name](request)
  config.checkpoint_every_steps = 1

  def nan_in_second(i, batch):
    return dict(batch, **{key: np.full_like(batch[key], np.nan)}) if i == 1 else batch
  workdir = str(tmp_path / "run")
  with pytest.raises(loop.NonFiniteError, match=r"step 2: non-finite loss"):
    loop.run(with_hook(build_task, nan_in_second), config, workdir)
  # The last good checkpoint (step 1) is complete on disk; nothing non-finite was saved.
  ckpt = checkpoint.Checkpointer(workdir, every_steps=1)
  assert ckpt.all_steps() == [1]
  state, meta = ckpt.restore(None, step=1)
  ckpt.close()
  assert meta["step"] == 1 and int(state["step"]) == 1


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_failed_start_writes_nothing_into_the_workdir(name, tmp_path):
  missing = str(tmp_path / "no_such_data")
  if name == "pretraining":
    build_task, config = pretrain.build_task, pretrain_config_file.get_config(
        f"dataset={missing},runlocal")
    # A batch this run's devices can take (else the config check stops it first).
    config.batch_size = config.data.k * jax.device_count()
  else:
    build_task, config = finetune.build_task, esc50.get_config(f"data={missing},runlocal")
  workdir = tmp_path / "run"
  workdir.mkdir()  # a workdir made beforehand stays as it was
  with pytest.raises((FileNotFoundError, ValueError), match="no_such_data"):
    loop.run(build_task, config, str(workdir))
  assert not os.listdir(workdir)  # no config.json, log, checkpoints/ or events file
