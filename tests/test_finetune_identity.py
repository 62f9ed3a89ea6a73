"""Fine-tuning results say what they came from: finetune_all reuses a split only when its
recorded init, mode and config are the ones asked for, and a fine-tuning restart with
another init is refused."""

import json
import os

import pytest

import helpers
from avjax import fileio
from avjax import resume
from avjax.downstream import finetune_all
from avjax.downstream import prepare
from avjax.downstream import task


def _root(tmp_path):
  """A folder that passes for a prepared ESC-50 (no run reads it in these tests)."""
  root = tmp_path / "esc50_prepared"
  root.mkdir()
  (root / prepare.MANIFEST).write_text("{}")
  return str(root)


def _config(data, init, mode):
  return helpers.downstream_config("esc50", f"data={data},split=1,mode={mode},init={init},"
                                   "runlocal")


def _fake_run(config, run_dir, top1):
  """What a finished fine-tuning run leaves: config.json and results.json."""
  fileio.write_json(os.path.join(run_dir, resume.CONFIG_FILE), json.loads(config.to_json()))
  fileio.write_json(os.path.join(run_dir, task.RESULTS), dict(
      dataset="esc50", split=1, mode=config.mode, init=config.init, init_torch="", top1=top1,
      encoder=dict(name="resnet_audio_tiny")))
  return dict(top1=top1)


def _run_all(root, workdir, init, mode, **kwargs):
  return finetune_all.run_all(init, {"esc50": root}, workdir, mode=mode, splits={1},
                              load_config=helpers.downstream_config, runlocal=True, **kwargs)


@pytest.fixture()
def finished_a(tmp_path, monkeypatch):
  """WORKDIR with esc50 split 1 fine-tuned from export A (top-1 0.25), and a fake trainer
  that records each run (the runs' numbers: B's top-1 is 0.75)."""
  root, workdir = _root(tmp_path), str(tmp_path / "downstream")
  trained = []

  def train(config, run_dir):
    trained.append((config.init, config.mode))
    return _fake_run(config, run_dir, 0.75 if config.init.endswith("B") else 0.25)
  monkeypatch.setattr(task, "train_and_evaluate", train)
  _run_all(root, workdir, str(tmp_path / "A"), "finetune")
  assert trained == [(str(tmp_path / "A"), "finetune")]
  return root, workdir, trained


def test_a_finished_split_made_with_the_same_config_is_reused(finished_a, tmp_path):
  root, workdir, trained = finished_a
  summary = _run_all(root, workdir, str(tmp_path / "A"), "finetune")
  assert len(trained) == 1  # not run again
  assert summary["init"] == str(tmp_path / "A") and summary["mode"] == "finetune"
  assert summary["datasets"]["esc50"]["splits"] == {"1": 0.25}


def test_finetune_all_refuses_a_split_made_with_another_init_or_mode(finished_a, tmp_path):
  root, workdir, trained = finished_a
  table = open(os.path.join(workdir, "results.md")).read()
  with pytest.raises(finetune_all.MismatchedRunError) as error:
    _run_all(root, workdir, str(tmp_path / "B"), "linear")
  message = str(error.value)
  assert f"esc50 split 1 ({workdir}/esc50/split1): init was '{tmp_path}/A', now '{tmp_path}/B'" \
      in message
  assert "mode was 'finetune', now 'linear'" in message and "--rerun_mismatched" in message
  assert len(trained) == 1
  assert open(os.path.join(workdir, "results.md")).read() == table  # not relabelled


def test_rerun_mismatched_runs_again_and_the_table_shows_what_each_number_came_from(
    finished_a, tmp_path):
  root, workdir, trained = finished_a
  summary = _run_all(root, workdir, str(tmp_path / "B"), "linear", rerun_mismatched=True)
  assert trained[-1] == (str(tmp_path / "B"), "linear")
  assert summary["datasets"]["esc50"]["splits"] == {"1": 0.75}
  assert summary["init"] == str(tmp_path / "B") and summary["mode"] == "linear"
  table = open(os.path.join(workdir, "results.md")).read()
  assert f"| ESC50 | 1 | linear | {tmp_path}/B | 75.0 |" in table
  # The earlier run is kept, moved aside.
  (aside,) = [d for d in os.listdir(os.path.join(workdir, "esc50")) if ".replaced-" in d]
  old = fileio.read_json(os.path.join(workdir, "esc50", aside, task.RESULTS))
  assert old["init"] == str(tmp_path / "A") and old["top1"] == 0.25


def test_an_unfinished_split_made_with_another_init_is_refused_too(tmp_path, monkeypatch):
  root, workdir = _root(tmp_path), str(tmp_path / "downstream")
  run_dir = os.path.join(workdir, "esc50", "split1")
  config = _config(root, str(tmp_path / "A"), "finetune")
  fileio.write_json(os.path.join(run_dir, resume.CONFIG_FILE), json.loads(config.to_json()))
  monkeypatch.setattr(task, "train_and_evaluate", lambda *a: pytest.fail("ran"))
  with pytest.raises(finetune_all.MismatchedRunError, match="init was"):
    _run_all(root, workdir, str(tmp_path / "B"), "finetune")


def test_a_finetune_restart_with_another_init_is_refused(tmp_path):
  old = _config("/data", "/exports/A", "finetune")
  meta = dict(step=2, run_config=resume.run_fields(old))
  new = _config("/elsewhere", "/exports/B", "finetune")
  with pytest.raises(resume.ResumeConfigError, match=r"init: '/exports/A' -> '/exports/B'"):
    resume.check_resume(new, str(tmp_path), 2, meta)
  # A checkpoint from before init was recorded is not compared on it (no default holds).
  del meta["run_config"]["init"]
  assert resume.check_resume(new, str(tmp_path), 2, meta, defaults=old) == []
