"""Runs that cannot go wrong silently: config validation, guarded resume, damaged checkpoints,
zero-step runs, and the prompt exit after SIGTERM."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import helpers

from avjax import checkpoint
from avjax import loop
from avjax import resume
from avjax import validate
from avjax.configs import pretrain as pretrain_config_file
from avjax.configs.downstream import ucf101
from avjax.data import batch_layout
from avjax.data import scene_sampling
from avjax.data import titles as titles_lib
from avjax.downstream import config as downstream_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------
# Config validation (one validator, before anything is written).


def pretrain_config(**overrides):
  config = pretrain_config_file.get_config("dataset=/nonexistent/dataset,runlocal")
  config.update_from_flattened_dict(overrides)
  return config


@pytest.mark.parametrize("overrides,message", [
    ({"data.k": 0}, r"config.data.k=0: must be an integer >= 1"),
    ({"checkpoint_every_steps": 0}, r"config.checkpoint_every_steps=0: must be an integer >= 1"),
    ({"log_every_steps": 0}, r"config.log_every_steps=0: must be an integer >= 1"),
    ({"optimizer.lr_peak": -0.002}, r"config.optimizer.lr_peak=-0.002: must be a learning rate > 0"),
    ({"optimizer.lr_init": -1e-4}, r"config.optimizer.lr_init=-0.0001: must be a learning rate >= 0"),
    ({"total_steps": -5}, r"config.total_steps=-5: must be an integer >= 0"),
    ({"num_epochs": 0}, r"num_epochs=0 with total_steps=0: the run would train zero steps"),
    ({"data.w": 2}, r"config.data: w=2 < k=4: a window of w snippets cannot hold k distinct"),
    ({"data.scenes": "nearby"}, r"config.data.scenes='nearby': must be one of \('none'"),
    ({"data.scenes": "distinct", "data.w": 8},
     r"data.w=8 with config.data.scenes='distinct'.*use w=-1"),
    ({"data.scenes": "adaptive", "data.k": 1, "batch_size": 8},
     r"config.data: k=1: scene-aware sampling draws k >= 2"),
    ({"data.crop_size": 80}, r"config.data.crop_size=80 > config.data.short_side=64"),
    ({"batch_size": 18}, r"config.batch_size=18: global batch size 18 is not a multiple of k=4"),
    ({"resume": "yes"}, r"config.resume='yes': must be one of"),
])
def test_bad_numbers_give_clear_errors_before_anything_is_written(overrides, message,
                                                                   tmp_path):
  config = pretrain_config(**overrides)
  with pytest.raises(validate.ConfigError, match=message):
    validate.check(config)
  workdir = tmp_path / "run"
  with pytest.raises(validate.ConfigError, match=message):
    loop.run(lambda *a, **k: pytest.fail("built a task"), config, str(workdir))
  assert not workdir.exists()


def test_the_validator_knows_fine_tuning_configs_and_devices():
  config = ucf101.get_config("data=/x,runlocal")
  assert validate.problems(config, device_count=8) == []
  assert downstream_config.problems(config) == []
  config.update(batch_size=12, grad_accum_steps=0, mode="probe")
  found = "\n".join(validate.problems(config, device_count=8))
  assert "config.grad_accum_steps=0" in found
  # The mode is the fine-tuning task's own check (it runs before the task reads data).
  assert downstream_config.problems(config) == [
      "config.mode='probe': must be one of ('finetune', 'linear')"]
  config.grad_accum_steps = 1
  assert "config.batch_size=12 does not split into 1 micro-batch(es) over 8 devices" in "\n".join(
      validate.problems(config, device_count=8))
  assert validate.problems(pretrain_config(batch_size=32), device_count=8) == []
  assert ("the 4 groups of a host batch (16 / k=4 / 1 processes) do not split evenly over 8"
          in "\n".join(validate.problems(pretrain_config(batch_size=16), device_count=8)))


@pytest.mark.parametrize("k,w,scenes", [
    (k, w, scenes) for k in (0, 1, 2, 4) for w in (-1, 0, 1, 3, 4, 8)
    for scenes in ("none", "distinct", "adaptive")])
def test_the_validator_and_the_sampler_cannot_disagree(k, w, scenes):
  # A config the validator passes builds its sampler over real titles, and one it refuses
  # does not: the validator asks the sampler.
  config = pretrain_config(**{"data.k": k, "data.w": w, "data.scenes": scenes})
  titles = [dict(id=f"t{n}", num_snippets=m, snippet_scenes=[i // 3 for i in range(m)])
            for n, m in enumerate((12, 30, 45))]
  try:
    scene_sampling.make_sampler(config.data, titles)
    built = True
  except ValueError:
    built = False
  data_problems = [p for p in validate.problems(config) if p.startswith("config.data")]
  assert built == (not data_problems), data_problems


@pytest.mark.parametrize("batch,k,devices", [
    (b, k, d) for b in (8, 12, 16, 18, 32) for k in (1, 2, 4) for d in (1, 2, 8)])
def test_the_validator_and_the_batch_layout_cannot_disagree(batch, k, devices):
  config = pretrain_config(**{"batch_size": batch, "data.k": k})
  try:
    batch_layout.check_batch_layout(batch, k, 1, devices)
    laid_out = True
  except ValueError:
    laid_out = False
  batch_problems = [p for p in validate.problems(config, device_count=devices)
                    if p.startswith("config.batch_size")]
  assert laid_out == (not batch_problems), batch_problems


@pytest.mark.parametrize("overrides", [
    {}, {"data.crop_size": 80}, {"data.audio_mask_fraction": 1.0},
    {"data.color_jitter": -0.5}, {"data.audio_mask_fraction": -0.1, "data.crop_size": 65}])
def test_the_validator_and_the_pipeline_format_check_cannot_disagree(overrides):
  config = pretrain_config(**overrides)
  params = dict(frames_per_snippet=16, sample_rate=config.data.sample_rate)
  try:
    titles_lib.check_format(config.data, params)
    fine = True
  except ValueError:
    fine = False
  data_problems = [p for p in validate.problems(config) if p.startswith("config.data")]
  assert fine == (not data_problems), data_problems


def test_a_zero_step_run_is_refused_by_the_command_and_never_exports(tmp_path):
  """python -m avjax.main refuses the config before TensorFlow loads (in a second)."""
  workdir = tmp_path / "run"
  code = ("import runpy, sys\n"
          "try:\n"
          "  runpy.run_module('avjax.main', run_name='__main__', alter_sys=True)\n"
          "finally:\n"
          "  print('tensorflow loaded' if 'tensorflow' in sys.modules else 'no tensorflow')\n")
  result = subprocess.run(
      [sys.executable, "-c", code, "--config=configs/pretrain.py:dataset=/x,runlocal",
       f"--workdir={workdir}", "--config.total_steps=-5"],
      capture_output=True, text=True, cwd=ROOT, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), check=False)
  assert result.returncode == 1
  assert "config.total_steps=-5: must be an integer >= 0" in result.stderr
  assert "Traceback" not in result.stderr
  assert result.stdout.splitlines()[-1] == "no tensorflow"
  assert not workdir.exists()


def test_the_benchmark_command_checks_its_config_too():
  result = subprocess.run(
      [sys.executable, "-m", "avjax.benchmark", "step", "--config=configs/pretrain.py:dataset=/x,runlocal",
       "--config.data.k=0"], capture_output=True, text=True, cwd=ROOT, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), check=False)
  assert result.returncode != 0
  assert "config.data.k=0: must be an integer >= 1" in result.stderr


toy_config, toy_task = helpers.toy_config, helpers.toy_task


def test_a_schedule_of_zero_steps_never_exports_or_finishes(tmp_path):
  # total_steps=0 with num_epochs=1 passes the up-front check; the task's schedule (here
  # total_steps, in real runs epochs x titles / batch) turns out to have no step.
  workdir = tmp_path / "run"
  config = toy_config(total_steps=0)
  with pytest.raises(validate.ConfigError, match="the schedule has 0 steps"):
    loop.run(toy_task([]), config, str(workdir))
  assert not workdir.exists()  # found before the workdir is opened: nothing written


def test_sigterm_saves_the_step_it_arrives_in_and_stops_before_finishing(tmp_path):
  def signal_while_fetching_the_third_batch(i):
    if i == 2:  # the first batch came with the task: this is step 3's
      os.kill(os.getpid(), signal.SIGTERM)
  workdir = str(tmp_path / "run")
  config = toy_config(total_steps=8, checkpoint_every_steps=100)
  # Stopped before the end of the schedule: no result (finish(), e.g. the export, not run).
  assert loop.run(toy_task([], signal_while_fetching_the_third_batch), config, workdir) is None
  ckpt = checkpoint.Checkpointer(workdir, every_steps=100)
  assert ckpt.all_steps() == [3]
  ckpt.close()
  assert not os.path.exists(os.path.join(workdir, loop.FINISHED_FILE))


@pytest.fixture()
def toy_run(tmp_path):
  """A toy run trained to step 6, checkpoints at 2, 4 and 6."""
  workdir = str(tmp_path / "run")
  state = loop.run(toy_task([]), toy_config(), workdir)
  assert int(state["step"]) == 6
  return workdir


def test_host_counters_are_logged_with_the_metrics(toy_run):
  with open(os.path.join(toy_run, "metrics.jsonl"), encoding="utf-8") as f:
    lines = [json.loads(l) for l in f]
  assert [l["step"] for l in lines] == [1, 2, 3, 4, 5, 6]
  assert all(l["skipped_records"] == 3 for l in lines)
  assert json.load(open(os.path.join(toy_run, loop.FINISHED_FILE))) == dict(step=6, num_steps=6)


def test_a_changed_config_is_refused_with_the_diff(toy_run):
  before = open(os.path.join(toy_run, "config.json")).read()
  changed = toy_config(batch_size=16, **{"data.k": 2, "total_steps": 8})
  with pytest.raises(resume.ResumeConfigError) as error:
    loop.run(toy_task([]), changed, toy_run)
  message = str(error.value)
  assert "compared with the checkpoint at step 6" in message
  assert "  batch_size: 16 -> 16" not in message
  assert "  batch_size: 8 -> 16" in message and "  data.k: 1 -> 2" in message
  assert "total_steps" not in message  # the schedule's length does not define the run
  assert "--config.resume=allow_changes" in message
  assert open(os.path.join(toy_run, "config.json")).read() == before  # not overwritten
  assert not os.path.exists(os.path.join(toy_run, resume.CONFIG_HISTORY))


def test_allow_changes_resumes_and_records_the_change(toy_run):
  starts = []
  changed = toy_config(resume="allow_changes", total_steps=8, **{"optimizer.lr_peak": 0.2,
                                                                 "data.dataset": "/data/b"})
  state = loop.run(toy_task(starts), changed, toy_run)
  assert starts == [6] and int(state["step"]) == 8
  with open(os.path.join(toy_run, resume.CONFIG_HISTORY), encoding="utf-8") as f:
    (entry,) = [json.loads(l) for l in f]
  assert entry["step"] == 6 and entry["allowed_by"] == "resume=allow_changes"
  assert entry["run_fields_changed"] == ["optimizer.lr_peak"]  # a moved dataset is not one
  assert entry["changes"]["optimizer.lr_peak"] == [0.1, 0.2]
  assert entry["changes"]["data.dataset"] == ["/data/a", "/data/b"]
  assert entry["changes"]["total_steps"] == [6, 8]
  assert json.load(open(os.path.join(toy_run, "config.json")))["optimizer"]["lr_peak"] == 0.2
  # The same config again: resumes without a word in the history.
  loop.run(toy_task(starts), toy_config(resume="allow_changes", total_steps=8,
                                        **{"optimizer.lr_peak": 0.2, "data.dataset": "/data/b"}),
           toy_run)
  assert len(open(os.path.join(toy_run, resume.CONFIG_HISTORY)).readlines()) == 1


def test_a_field_an_old_checkpoint_lacks_counts_as_its_default(toy_run, tmp_path):
  # An older run: its checkpoint meta has no run_config, its config.json lacks a field.
  for meta in glob.glob(os.path.join(toy_run, "checkpoints", "*", "meta", "metadata")):
    with open(meta, "w", encoding="utf-8") as f:
      json.dump({"step": int(meta.split(os.sep)[-3])}, f)
  old = json.load(open(os.path.join(toy_run, "config.json")))
  del old["optimizer"]["grad_clip_norm"]
  with open(os.path.join(toy_run, "config.json"), "w", encoding="utf-8") as f:
    json.dump(old, f)
  defaults = toy_config()
  starts = []
  loop.run(toy_task(starts), toy_config(total_steps=7), toy_run, defaults=defaults)
  assert starts == [6]
  with pytest.raises(resume.ResumeConfigError, match=r"optimizer.grad_clip_norm: 0.0 -> 1.0"):
    loop.run(toy_task([]), toy_config(total_steps=8, **{"optimizer.grad_clip_norm": 1.0}),
             toy_run, defaults=defaults)


# ---------------------------------------------------------------------------
# Damaged checkpoints.


def _damage(workdir, step, how="truncate"):
  folder = os.path.join(workdir, "checkpoints", str(step))
  if how == "meta":
    with open(os.path.join(folder, "meta", "metadata"), "w", encoding="utf-8") as f:
      f.write("{not json")
    return
  files = [p for p in glob.glob(os.path.join(folder, "state", "**", "*"), recursive=True)
           if os.path.isfile(p) and os.sep + "d" + os.sep in p]
  assert files
  for p in files:
    with open(p, "r+b") as f:
      f.truncate(8)


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(toy_run, caplog):
  _damage(toy_run, 6)
  _damage(toy_run, 4, how="meta")
  starts = []
  caplog.set_level("ERROR")
  state = loop.run(toy_task(starts), toy_config(total_steps=8), toy_run)
  assert int(state["step"]) == 8
  assert starts == [6, 2]  # built for step 6, whose state could not be read; then step 2
  folder = os.path.join(toy_run, "checkpoints")
  assert {"6.damaged", "4.damaged"} <= set(os.listdir(folder))
  lines = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
  assert len(lines) == 2 and all("\n" not in l for l in lines)
  assert re.search(r"checkpoint at step 6 cannot be restored: ValueError: .*; moved it aside "
                   r"to checkpoints/6.damaged", lines[0] + lines[1])
  assert "step 4 cannot be restored: JSONDecodeError" in lines[0] + lines[1]
  assert checkpoint.Checkpointer(toy_run, every_steps=1).all_steps()[-1] == 8


def test_no_intact_checkpoint_stops_with_a_clear_error(toy_run):
  for step in (2, 4, 6):
    _damage(toy_run, step)
  for _ in range(2):  # and keeps stopping, rather than training from scratch
    with pytest.raises(resume.NoIntactCheckpointError, match="no intact checkpoint"):
      loop.run(toy_task([]), toy_config(total_steps=8), toy_run)
  assert sorted(os.listdir(os.path.join(toy_run, "checkpoints"))) == [
      "2.damaged", "4.damaged", "6.damaged"]


# ---------------------------------------------------------------------------
# SIGTERM: saved, then the process is gone within moments.


@pytest.mark.slow
def test_sigterm_saves_and_exits_promptly(wide_tiny_dataset, tmp_path):
  dataset = wide_tiny_dataset  # batches of 8 distinct titles
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "avjax.main",
         f"--config=configs/pretrain.py:dataset={dataset},runlocal,micro,k=2",
         f"--workdir={workdir}",
         "--config.data.num_frames=4", "--config.data.short_side=40",
         "--config.data.crop_size=32", "--config.batch_size=16", "--config.total_steps=1000",
         "--config.log_every_steps=1", "--config.checkpoint_every_steps=1000"]
  proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3"))
  saved = None
  for line in proc.stderr:
    if re.search(r"step 2/1000", line):
      proc.send_signal(signal.SIGTERM)
    if "preempted at step" in line and "checkpoint saved" in line:
      saved = time.time()
  assert proc.wait(timeout=120) == 0
  exit_seconds = time.time() - saved
  print(f"exit {exit_seconds:.2f} s after the save")
  assert exit_seconds < 20  # generous; measured figures are in the closing notes
  steps = checkpoint.Checkpointer(workdir, every_steps=1).all_steps()
  assert len(steps) == 1 and 2 <= steps[0] < 1000
  assert not (workdir / "export").exists()


# ---------------------------------------------------------------------------
# Ctrl-C: saved like SIGTERM; a second one aborts at once.


@pytest.fixture
def python_sigint():
  """Python's own SIGINT handler, as in a terminal (a shell's background job starts with
  SIGINT ignored); afterwards the one the tests started with."""
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint")
def test_ctrl_c_saves_the_step_it_arrives_in_and_a_second_one_aborts_at_once(tmp_path):
  def ctrl_c(times):
    def fetch(i):
      if i == 2:  # while fetching step 3's batch
        for _ in range(times):
          os.kill(os.getpid(), signal.SIGINT)
    return fetch
  workdir = str(tmp_path / "run")
  config = toy_config(total_steps=8, checkpoint_every_steps=100)
  with pytest.raises(loop.Interrupted, match="interrupted at step 3: checkpoint saved"):
    loop.run(toy_task([], ctrl_c(1)), config, workdir)
  ckpt = checkpoint.Checkpointer(workdir, every_steps=100)
  assert ckpt.all_steps() == [3]
  ckpt.close()
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
  starts = []
  with pytest.raises(KeyboardInterrupt) as error:
    loop.run(toy_task(starts, ctrl_c(2)), config, workdir)
  assert not isinstance(error.value, loop.Interrupted) and starts == [3]
  ckpt = checkpoint.Checkpointer(workdir, every_steps=100)
  assert ckpt.all_steps() == [3]  # aborted: no save at step 6
  ckpt.close()


def test_a_resumed_run_keeps_one_metrics_line_per_step(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  monkeypatch.chdir(tmp_path)
  config = toy_config(checkpoint_every_steps=4, **{"data.dataset": "data/movies"})
  loop.run(toy_task([]), config, workdir, max_steps=5)  # checkpoints at 4 and 5
  shutil.rmtree(os.path.join(workdir, "checkpoints", "5"))  # killed before saving step 5
  starts = []
  loop.run(toy_task(starts), config, workdir)
  assert starts == [4]
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    assert [json.loads(l)["step"] for l in f] == [1, 2, 3, 4, 5, 6]
  # config.json names the dataset so that commands run from elsewhere find it.
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["data"]["dataset"] == str(tmp_path / "data" / "movies")
