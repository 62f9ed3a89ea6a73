"""One run per workdir: a second training, fine-tuning sweep or export into a live run's
folder is refused at once naming it; a stale lock is taken over; a workdir that cannot be
used is named in one line."""

import json
import os
import socket
import subprocess
import sys

import pytest

import helpers
from avjax import dirlock
from avjax import loop
from avjax import workdir as workdir_lib
from avjax.downstream import finetune_all


def _never(*args, **kwargs):
  pytest.fail("built a task in a locked workdir")


def test_a_second_run_in_a_live_runs_workdir_is_refused_at_once_naming_it(tmp_path):
  workdir = str(tmp_path / "run")
  with dirlock.DirLock(workdir, workdir_lib.RUN_LOCK, "training run"):  # a live run: this process
    with pytest.raises(dirlock.LockedError) as error:
      loop.run(_never, helpers.toy_config(), workdir)
    with pytest.raises(dirlock.LockedError, match="another training run"):
      finetune_all.run_all("", {"esc50": "/x"}, workdir, load_config=helpers.downstream_config,
                           runlocal=True, splits={1})
  message = str(error.value)
  assert f"PID {os.getpid()} on host {socket.gethostname()}" in message
  assert os.path.join(workdir, workdir_lib.RUN_LOCK) in message
  assert os.listdir(workdir) == []  # nothing of the refused run
  # Once the first run has ended, the workdir is free; the lock goes with the run.
  state = loop.run(helpers.toy_task([]), helpers.toy_config(), workdir)
  assert int(state["step"]) == 6
  assert not os.path.exists(os.path.join(workdir, workdir_lib.RUN_LOCK))


def test_the_lock_of_a_dead_run_is_taken_over(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  (workdir / workdir_lib.RUN_LOCK).write_text(json.dumps(dict(
      pid=int(gone.stdout), host=socket.gethostname(), purpose="training run")))
  state = loop.run(helpers.toy_task([]), helpers.toy_config(), str(workdir))
  assert int(state["step"]) == 6 and not (workdir / workdir_lib.RUN_LOCK).exists()


def test_a_workdir_that_is_a_file_or_unwritable_is_named_in_one_line(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(workdir_lib.WorkdirError, match=r"--workdir=.*/file: a file stands there"):
    loop.run(_never, helpers.toy_config(), str(tmp_path / "file"))
  if os.geteuid() == 0:
    return  # root writes anywhere
  (tmp_path / "ro").mkdir(mode=0o555)
  with pytest.raises(workdir_lib.WorkdirError, match=r"cannot write there \(PermissionError"):
    loop.run(_never, helpers.toy_config(), str(tmp_path / "ro" / "run"))
