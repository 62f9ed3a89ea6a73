"""What the training commands (python -m avjax.main, python -m avjax.finetune) share."""

import os
import sys

from avjax import console
from avjax import sharding


def train(name, config, workdir):
  """Console, multi-host start, the task of command `name` ("main": pretraining, else
  downstream) imported with TensorFlow's banners sent to the log, train_and_evaluate. A
  stopping error (bad config, refused restart, unreadable data) exits with its message,
  status 1; a preempted run exits at once (no slow teardown in the grace period), status 0;
  after Ctrl-C (checkpoint saved) status 130. Returns (task, its result)."""
  console.setup()  # the log file opens in WORKDIR once the config and data are checked
  from avjax import validate  # pylint: disable=g-import-not-at-top
  try:  # before TensorFlow loads: a bad number is refused in a second
    validate.check(config)
  except validate.ConfigError as e:
    sys.exit(f"avjax.{name}: {e}")
  sharding.maybe_initialize_distributed()
  # Imported here, not at the top: TensorFlow loads only when a run starts (fast --help).
  with console.native_output_to_log():
    if name == "main":
      from avjax.pretrain import task  # pylint: disable=g-import-not-at-top
    else:
      from avjax.downstream import task  # pylint: disable=g-import-not-at-top
  from avjax import loop  # pylint: disable=g-import-not-at-top
  try:
    result = task.train_and_evaluate(config, workdir)
  except loop.STOPPING_ERRORS as e:
    sys.exit(f"avjax.{name}: {e}")
  except loop.Interrupted as e:
    console.done(str(e), checkpoints=os.path.join(os.path.abspath(workdir), "checkpoints"))
    loop.exit_promptly(130)
  if result is None:
    console.done("stopped before the end of the schedule; the same command resumes",
                 checkpoints=os.path.join(os.path.abspath(workdir), "checkpoints"))
    loop.exit_promptly(0)
  return task, result
