"""One TensorBoard stream per workdir: every writer of a folder adds to it, no (tag, step)
twice, and a writer that writes nothing leaves nothing."""

import os

from tensorboard.backend.event_processing import event_file_loader

from avjax import metrics


def _pairs(logdir):
  """[(tag, step)] of every value in the folder's event files, read by TensorBoard."""
  pairs = []
  for name in sorted(os.listdir(logdir)):
    if name.startswith("events.out.tfevents"):
      for event in event_file_loader.EventFileLoader(os.path.join(logdir, name)).Load():
        pairs += [(v.tag, int(event.step)) for v in event.summary.value]
  return pairs


def test_writers_of_one_folder_write_each_tag_and_step_once(tmp_path):
  logdir = str(tmp_path / "run")
  idle = metrics.MetricWriter(logdir)
  idle.close()
  assert not os.path.exists(logdir)  # nothing written, nothing created

  train = metrics.MetricWriter(logdir)
  for step in (1, 2):
    train.write_scalars(step, {"loss": 3.0 - step, "discrepancy/gap": 0.1 * step})
  train.close()
  # A resumed run or a standalone evaluation repeats step 2 and adds step 3.
  again = metrics.MetricWriter(logdir)
  again.write_scalars(2, {"discrepancy/gap": 9.0, "discrepancy/probe_f": 0.5})
  again.write_scalars(3, {"loss": 0.5})
  again.close()
  assert again.skipped == 1

  pairs = _pairs(logdir)
  assert sorted(pairs) == sorted(set(pairs))
  assert set(pairs) == {("loss", 1), ("loss", 2), ("loss", 3), ("discrepancy/gap", 1),
                        ("discrepancy/gap", 2), ("discrepancy/probe_f", 2)}
