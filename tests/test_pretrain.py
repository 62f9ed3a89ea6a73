"""Pretraining through the shared loop on a tiny dataset: console, checkpoints, export,
resume, and the discrepancy evaluator every N steps with the probe at the end.

One tiny run (the micro model, 4 steps, evaluations at steps 2 and 4) serves every test
here. SIGTERM is tested on the loop's toy task and on the command
(tests/test_run_guards.py); the sharded and rematerialised update step against one device
and against no remat in tests/test_fused_norm.py.
"""

import functools
import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest

import helpers
from avjax import checkpoint
from avjax import metrics
from avjax import sharding
from avjax.configs import pretrain as pretrain_config_file
from avjax.data import pipeline
from avjax.data import records
from avjax.evals import discrepancy
from avjax.evals import offline
from avjax.evals import plots
from avjax.models import av
from avjax.models import heads
from avjax.pretrain import task as pretrain


def pretrain_config(dataset, **overrides):
  config = pretrain_config_file.get_config(f"dataset={dataset},runlocal,micro")
  config.data = helpers.tiny_data_config(dataset)  # 4 frames, 32x32 crops, k=2
  config.batch_size = 16  # 8 groups: one per simulated device
  config.total_steps = 4
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.update(overrides)
  return config


def losses_by_step(workdir):
  """step -> loss from metrics.jsonl; a resumed run's lines replace earlier ones."""
  out = {}
  with open(os.path.join(workdir, metrics.METRICS_FILE), encoding="utf-8") as f:
    for line in f:
      m = json.loads(line)
      out[m["step"]] = m["loss"]
  return out


def _write_labels(path, manifest, snippet_seconds):
  """A labels.json for the tiny dataset: one event of class (m % 3) per snippet."""
  titles = {}
  for t in manifest["titles"]:
    titles[t["id"]] = dict(events=[
        dict(title=t["id"], start=m * snippet_seconds + 0.1, end=(m + 1) * snippet_seconds - 0.1,
             **{"class": m % 3}) for m in range(t["num_snippets"])])
  with open(path, "w") as f:
    json.dump(dict(classes=[{}, {}, {}], titles=titles), f)


def _event_pairs(logdir):
  """[(tag, step)] of every scalar in the event files under `logdir`, read by
  TensorBoard's own loader."""
  # pylint: disable-next=g-import-not-at-top
  from tensorboard.backend.event_processing import event_file_loader
  pairs = []
  for folder, _, files in os.walk(logdir):
    for name in files:
      if name.startswith("events.out.tfevents"):
        loader = event_file_loader.EventFileLoader(os.path.join(folder, name))
        for event in loader.Load():
          pairs += [(v.tag, int(event.step)) for v in event.summary.value]
  return pairs


class _Records(logging.Handler):
  """Keeps the log records of a run."""

  def __init__(self):
    super().__init__()
    self.records = []

  def emit(self, record):
    self.records.append(record)


UNINTERRUPTED_LOG = _Records()


@pytest.fixture(scope="module")
def uninterrupted(wide_tiny_dataset, tmp_path_factory):
  """The tiny run: 4 steps, the discrepancy measures at steps 2 and 4, the probe (on labels
  written for the tiny dataset) at the end."""
  root = tmp_path_factory.mktemp("uninterrupted")
  manifest = records.load_manifest(wide_tiny_dataset)
  params = manifest["params"]
  labels = str(root / "labels.json")
  _write_labels(labels, manifest, params["frames_per_snippet"] / params["fps"])
  config = pretrain_config(wide_tiny_dataset)
  config.evals.discrepancy = 2
  config.discrepancy.labels = labels
  config.discrepancy.probe_steps = 50
  workdir = str(root / "run")
  logger = logging.getLogger()
  level = logger.level
  logger.addHandler(UNINTERRUPTED_LOG)
  logger.setLevel(logging.INFO)
  try:
    state = pretrain.train_and_evaluate(config, workdir)
  finally:
    logger.removeHandler(UNINTERRUPTED_LOG)
    logger.setLevel(level)
  return config, workdir, state, manifest


@pytest.mark.slow
def test_console_says_compile_then_one_line_per_step_with_an_eta(uninterrupted):
  _, _, state, _ = uninterrupted
  assert int(state["step"]) == 4
  for_console = [r for r in UNINTERRUPTED_LOG.records if getattr(r, "console", True)]
  lines = [r.getMessage() for r in for_console if r.levelno >= logging.INFO]
  compiling = lines.index("compiling the update step...")
  assert lines[compiling + 1].startswith("compiled the update step and ran step 1 in ")
  steps = [l for l in lines if l.startswith("step ")]
  assert [l.split()[1] for l in steps] == ["1/4", "2/4", "3/4", "4/4"]
  # From the first step measured after the compile on, a rate and an ETA.
  assert steps[0].endswith("? samples/s  ETA ?")
  assert all("ETA ?" not in l and "? samples/s" not in l for l in steps[1:])
  # The parameter table goes to the log file only; the console gets one count per module.
  counts = [l for l in lines if l.startswith("parameters: ")]
  assert len(counts) == 1 and "video_encoder" in counts[0] and "audio_encoder" in counts[0]
  tables = [r for r in UNINTERRUPTED_LOG.records if "| Name" in r.getMessage()]
  assert tables and not any(getattr(r, "console", True) for r in tables)


@pytest.mark.slow
def test_run_logs_checkpoints_and_exports(uninterrupted):
  config, workdir, state, _ = uninterrupted
  assert int(state["step"]) == 4
  losses = losses_by_step(workdir)
  assert sorted(losses) == [1, 2, 3, 4] and all(np.isfinite(list(losses.values())))
  assert json.load(open(os.path.join(workdir, "config.json")))["data"]["k"] == 2
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  assert checkpoint.Checkpointer(workdir, every_steps=2).latest_step() == 4

  # The export restores into the downstream video model (f alone) and computes exactly
  # the features of the trained AVModel's f.
  variables, model_config = checkpoint.load_export(os.path.join(workdir, "export"))
  assert set(variables["params"]) == {"video_encoder", "audio_encoder"}
  f = av.build_encoder("video", model_config)
  video = np.random.default_rng(0).normal(size=(2, 4, 32, 32, 3)).astype(np.float32)
  features = jax.jit(f.apply)({"params": variables["params"]["video_encoder"],
                               "batch_stats": variables["batch_stats"]["video_encoder"]}, video)
  model = av.build_model(config.model)
  pooled_f = lambda m, v: heads.global_average_pool(m.video_encoder(v, train=False))
  expected = jax.jit(functools.partial(model.apply, method=pooled_f))(
      {"params": state["params"], "batch_stats": state["batch_stats"]}, video)
  np.testing.assert_allclose(np.asarray(features).mean(axis=(1, 2, 3)), expected, rtol=1e-5,
                             atol=1e-6)


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_losses(uninterrupted, tmp_path):
  config, reference_dir, _, _ = uninterrupted
  # A run killed after step 2 leaves exactly what the reference run had saved at step 2.
  workdir = tmp_path / "killed"
  shutil.copytree(os.path.join(reference_dir, checkpoint.CHECKPOINT_DIR, "2"),
                  workdir / checkpoint.CHECKPOINT_DIR / "2")
  config = config.copy_and_resolve_references()
  config.evals.discrepancy = 0  # not a field that defines the run: the same losses
  state = pretrain.train_and_evaluate(config, str(workdir))  # restarted in the same workdir
  assert int(state["step"]) == 4
  want, got = losses_by_step(reference_dir), losses_by_step(workdir)
  assert sorted(got) == [3, 4]
  np.testing.assert_allclose([got[3], got[4]], [want[3], want[4]], rtol=1e-5)


@pytest.mark.slow
def test_the_discrepancy_evaluator_every_n_steps_and_its_command_line_path(uninterrupted,
                                                                            tmp_path):
  _, workdir, _, manifest = uninterrupted

  data = json.load(open(os.path.join(workdir, discrepancy.RESULTS_FILE)))
  assert [e["step"] for e in data["steps"]] == [2, 4]
  first, last = data["steps"]
  assert "probe" not in first  # measures only, until the last step
  assert set(last["kl"]) == {"KL(S-||S+)", "KL(S!=||S+)", "KL(S-||S!=)"}
  assert all(np.isfinite(v) for v in last["kl"].values())
  # Every snippet of the held-out titles (one movie, one show of two episodes), once.
  held_out = [t["num_snippets"] for t in manifest["titles"] if t["split"] == "val"]
  assert last["num_titles"] == len(held_out) == 3
  assert last["num_snippets"] == last["pairs"]["S+"]["total"] == sum(held_out)
  assert last["pairs"]["S-"]["total"] == sum(m * (m - 1) for m in held_out)
  assert last["pairs"]["S!="]["total"] == sum(held_out) ** 2 - sum(m * m for m in held_out)
  p = last["probe"]
  assert p["num_classes"] == 3 and p["num_test"] == sum(held_out) and 0 <= p["video"] <= 1
  # Beside every probe, the same probe on the run's random init (its step-0 variables), as
  # initialised and with BatchNorm recalibrated on the probe's training snippets.
  assert set(p["random"]) == set(p["random_bn"]) == {"video", "audio", "video_z", "audio_z"}
  title = last["title_probe"]
  train_titles = [t for t in manifest["titles"] if t["split"] == "train"]
  assert title["titles"] == len(train_titles) and title["chance"] == 1 / len(train_titles)
  assert set(title["random"]) == set(p["random"]) and 0 <= title["video"] <= 1
  # Every KL with its noise floor, every step; S+ separation with its title bootstrap.
  for entry in (first, last):
    assert set(entry["kl_floor"]) == set(entry["kl"])
    sep = entry["separation"]["S+ - S!="]
    assert sep["lo"] <= sep["diff"] <= sep["hi"] and entry["separation"]["titles"] == 3
  for name in (discrepancy.HIST_FIGURE, discrepancy.CURVES_FIGURE, "discrepancy/hist_step_2.png"):
    with open(os.path.join(workdir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  # The command-line path: re-evaluate a kept checkpoint, merged into the same file.
  entries = offline.evaluate_workdir(workdir, pipeline.EvalData, steps=[2],
                                         overrides=dict(probe=False))
  assert entries[0]["step"] == 2 and "probe" not in entries[0]
  merged = json.load(open(os.path.join(workdir, discrepancy.RESULTS_FILE)))
  assert [e["step"] for e in merged["steps"]] == [2, 4] and "probe" in merged["steps"][1]

  # One TensorBoard stream: a standalone evaluation of steps the training run already
  # evaluated adds no second point at the same step, also when run twice.
  offline.evaluate_workdir(workdir, pipeline.EvalData, steps="all",
                               overrides=dict(probe=False))
  pairs = _event_pairs(workdir)
  assert {("discrepancy/gap", 2), ("discrepancy/gap", 4), ("loss", 4)} <= set(pairs)
  assert not [p for p in set(pairs) if pairs.count(p) > 1]

  # Figure 3: training loss of several runs on one plot.
  out = str(tmp_path / "loss.png")
  plots.plot_losses({"k=2": [workdir], "again": [workdir, workdir]}, out)
  assert os.path.getsize(out) > 1000


@pytest.mark.slow
def test_export_command_writes_the_backbones_of_a_checkpoint(uninterrupted, tmp_path):
  _, workdir, state, _ = uninterrupted
  assert checkpoint.export_workdir(workdir, str(tmp_path / "exported"), step=2) == 2
  variables, _ = checkpoint.load_export(tmp_path / "exported")
  at_end, _ = checkpoint.load_export(os.path.join(workdir, "export"))
  assert set(variables["batch_stats"]) == {"video_encoder", "audio_encoder"}
  # Step 2's weights, not the final ones that training exported.
  leaf = lambda v: np.asarray(jax.tree.leaves(v["params"]["video_encoder"])[0])
  assert not np.allclose(leaf(variables), leaf(at_end))
  np.testing.assert_array_equal(leaf(at_end),
                                np.asarray(jax.tree.leaves(state["params"]["video_encoder"])[0]))
  with pytest.raises(FileNotFoundError, match="no config.json"):
    checkpoint.export_workdir(str(tmp_path), str(tmp_path / "x"))


@pytest.mark.slow
def test_a_second_run_of_the_same_settings_reuses_the_jitted_functions(wide_tiny_dataset,
                                                                       tmp_path):
  """jax.jit caches compiled programs by function: the same init and update objects for the
  same settings (another seed, another log cadence) spare a sweep's next run the compiles."""
  mesh = sharding.make_mesh()

  def functions(config):
    task = pretrain.build_task(config, str(tmp_path), start_step=0, writer=None, mesh=mesh)
    task.train_iter.close()
    return task.init, task.update

  first = functions(pretrain_config(wide_tiny_dataset))
  again = functions(pretrain_config(wide_tiny_dataset, seed=7, log_every_steps=2))
  assert again[0] is first[0] and again[1] is first[1]
  config = pretrain_config(wide_tiny_dataset)
  config.optimizer.lr_peak *= 2
  other = functions(config)
  assert other[0] is not first[0] and other[1] is not first[1]
