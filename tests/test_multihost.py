"""Two real JAX processes (2 x 4 CPU devices) against one process with 8: the multi-host path.

The real-process tests start them as a user would, with launch/local_multihost.py (gloo
collectives on localhost), on the tiny dataset and the micro model (configs/pretrain.py
arg `micro`): pretraining that is killed, resumed and preempted; export and discrepancy;
fine-tuning; a process that dies; the input shares under simulated SLURM variables (all
slow). The one-process references run in this test process, whose 8 simulated devices
(tests/conftest.py) form the same mesh; the processes use the suite's PRNG (rbg) so that
both start from the same parameters. One pretraining launch that is killed and one that
resumes and is preempted serve the kill, SIGTERM, loss, export, discrepancy and
fine-tuning tests.

Tolerance of the per-step losses. Both sides compute the same global batch with the same
synchronised BatchNorm statistics; what differs is the order in which float32 sums over
devices are taken (XLA's in-process all-reduce against gloo's). The first loss must agree
to float32 rounding (rtol 1e-6; measured: about 1e-7). After it, Adam divides each
gradient by its own running magnitude, so a rounding difference in a near-zero gradient
can become an update difference of up to the learning rate: later steps are compared with
rtol 2e-3 (measured: under 1e-6 over the steps this test runs). A wrong input share, or
BatchNorm statistics of each host's half batch, change the first step's batch or its
normalisation, not only its rounding: hence the first loss is held to 1e-6. Restarts of
the same two-process run reproduce its own losses to rtol 1e-6.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

import helpers
from avjax import checkpoint
from avjax import fileio
from avjax import metrics
from avjax import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "launch"))
import local_multihost  # pylint: disable=g-import-not-at-top,wrong-import-position

LAUNCHER = os.path.join(ROOT, "launch", "local_multihost.py")
TOTAL_STEPS = 10
FIRST_LOSS_RTOL = 1e-6
LOSS_RTOL = 2e-3
# A process whose peer died must be gone within the JAX heartbeat timeout plus this.
EXIT_MARGIN_S = 45
# Fine-tuning: one step, then a second from the updated state and optimizer; it saves once,
# at the end, where the one-process test resumes.
FINETUNE_STEPS = 2


# ---------------------------------------------------------------------------
# Without processes: where the settings come from, and the launcher's bookkeeping.


def test_cluster_settings_from_explicit_variables_and_kubernetes_index():
  env = dict(JAX_COORDINATOR_ADDRESS="10.0.0.1:1234", JAX_NUM_PROCESSES="4",
             JAX_PROCESS_ID="2")
  assert sharding.cluster_settings(env) == ("JAX_COORDINATOR_ADDRESS", dict(
      coordinator_address="10.0.0.1:1234", num_processes=4, process_id=2))
  # A Kubernetes Indexed Job: the pod's completion index is the process id.
  env = dict(JAX_COORDINATOR_ADDRESS="avjax-workers-0-0.avjax:1234", JAX_NUM_PROCESSES="2",
             JOB_COMPLETION_INDEX="1")
  source, kwargs = sharding.cluster_settings(env)
  assert source == "JAX_COORDINATOR_ADDRESS, JOB_COMPLETION_INDEX" and kwargs["process_id"] == 1
  with pytest.raises(ValueError, match=r"JAX_NUM_PROCESSES and JAX_PROCESS_ID \(or "
                                       r"JOB_COMPLETION_INDEX\) not"):
    sharding.cluster_settings(dict(JAX_COORDINATOR_ADDRESS="h:1"))


def test_cluster_settings_slurm_and_others():
  step = dict(SLURM_JOB_ID="7", SLURM_NTASKS="16", SLURM_STEP_NUM_TASKS="16",
              SLURM_PROCID="3", SLURM_LOCALID="3", SLURM_STEP_NODELIST="gpu[01-02]")
  assert sharding.cluster_settings(step) == ("SLURM", {})  # JAX's own SLURM detection
  # The batch script itself, or a one-task step, runs alone.
  assert sharding.cluster_settings(dict(SLURM_JOB_ID="7", SLURM_NTASKS="16",
                                        SLURM_PROCID="0")) is None
  assert sharding.cluster_settings(dict(step, SLURM_STEP_NUM_TASKS="1")) is None
  assert sharding.cluster_settings(dict(OMPI_COMM_WORLD_SIZE="4")) == (
      "OMPI_COMM_WORLD_SIZE", {})
  assert sharding.cluster_settings(dict(AVJAX_DISTRIBUTED="1"))[0] == "AVJAX_DISTRIBUTED"
  assert sharding.cluster_settings({}) is None
  assert sharding.cluster_settings(dict(OMPI_COMM_WORLD_SIZE="1")) is None


def test_launcher_environment():
  base = dict(PATH="/bin", XLA_FLAGS="--xla_force_host_platform_device_count=8 --foo",
              SLURM_NTASKS="8", JAX_COMPILATION_CACHE_DIR="/c")
  env = local_multihost.process_env(base, process_id=1, num_processes=2, port=1234,
                                    devices=4, heartbeat_timeout=30)
  assert env["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=4"
  assert (env["JAX_COORDINATOR_ADDRESS"], env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"]) == (
      "127.0.0.1:1234", "2", "1")
  assert env["JAX_PLATFORMS"] == "cpu" and env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] == "gloo"
  assert "SLURM_NTASKS" not in env and "JAX_COMPILATION_CACHE_DIR" not in env
  for style in local_multihost.STYLES:
    env = local_multihost.process_env(base, process_id=1, num_processes=2, port=1234,
                                      devices=4, heartbeat_timeout=30, style=style)
    source, kwargs = sharding.cluster_settings(env)
    assert source.split(",")[0] == {"slurm": "SLURM"}.get(style, "JAX_COORDINATOR_ADDRESS")
    assert kwargs in ({}, dict(coordinator_address="127.0.0.1:1234", num_processes=2,
                               process_id=1))


class Launch:
  """launch/local_multihost.py in the background; its output lines, timed."""

  def __init__(self, args, command, *, env=None, cwd=ROOT):
    self.t0 = time.time()
    self.lines = []  # (seconds since start, line)
    self.proc = subprocess.Popen(
        [sys.executable, LAUNCHER, *args, "--", *command], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stdout:
      self.lines.append((time.time() - self.t0, line.rstrip("\n")))

  def text(self, prefix=""):
    return "\n".join(line for _, line in list(self.lines) if line.startswith(prefix))

  def pids(self):
    return [int(p) for p in re.findall(r"process \d+ of \d+: pid (\d+)", self.text())]

  def when(self, pattern):
    """Seconds since start of the first line matching `pattern`, or None."""
    return next((t for t, line in list(self.lines) if re.search(pattern, line)), None)

  def wait_for(self, condition, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
      if condition():
        return
      if self.proc.poll() is not None:
        self._fail(f"the launch ended before {what}")
      time.sleep(0.1)
    self._fail(f"no {what} within {timeout} s")

  def wait(self, timeout):
    try:
      self.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self._fail(f"still running after {timeout} s")
    self._reader.join(timeout=10)
    return self.proc.returncode

  def kill(self):
    for pid in self.pids() + [self.proc.pid]:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass

  def _fail(self, message):
    self.kill()
    tail = "\n".join(line for _, line in self.lines[-60:])
    pytest.fail(f"{message}; last output:\n{tail}")


def _fake(script):
  return [sys.executable, "-c", script]


def test_launcher_stops_the_others_when_one_fails_and_passes_sigterm_on(tmp_path):
  # Process 1 fails at once; process 0 would run forever and ignores SIGTERM.
  script = ("import os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('started', os.environ['JAX_PROCESS_ID'], flush=True)\n"
            "if os.environ['JAX_PROCESS_ID'] == '1': sys.exit(3)\n"
            "time.sleep(600)\n")
  launch = Launch(["--processes=2", "--grace=1", f"--log_dir={tmp_path}"], _fake(script))
  assert launch.wait(timeout=60) == 3
  out = launch.text()
  assert "process 1 exited with status 3; the others have 1 s to stop" in out
  assert "process 0: killed by the launcher" in out
  assert "FAILED: process 1 exited with status 3 first" in out
  assert "started 1" in (tmp_path / "process_1.log").read_text()

  # SIGTERM to the launcher reaches every process, which may then finish cleanly.
  script = ("import os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n")
  launch = Launch(["--processes=2"], _fake(script))
  launch.wait_for(lambda: launch.text().count("ready") == 2, 60, "two ready processes")
  launch.proc.send_signal(signal.SIGTERM)
  assert launch.wait(timeout=60) == 0
  assert launch.text().count("passing SIGTERM to process") == 2


# ---------------------------------------------------------------------------
# Real processes.


def _env():
  env = dict(os.environ)
  env.update(PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
             TF_CPP_MIN_LOG_LEVEL="2")
  return env


# The micro model on the tiny dataset (4 frames, 32x32 crops, k=2); 8 groups per batch.
CONFIG_ARG = "runlocal,micro,k=2"
OVERRIDES = dict(data=dict(num_frames=4, short_side=40, crop_size=32), batch_size=16,
                 total_steps=TOTAL_STEPS, log_every_steps=1, checkpoint_every_steps=2)


def _pretrain_command(dataset, workdir):
  flags = [f"--config.{group}.{k}={v}" for group, d in OVERRIDES.items()
           if isinstance(d, dict) for k, v in d.items()]
  flags += [f"--config.{k}={v}" for k, v in OVERRIDES.items() if not isinstance(v, dict)]
  return [sys.executable, "-m", "avjax.main", f"--workdir={workdir}",
          f"--config=configs/pretrain.py:dataset={dataset},{CONFIG_ARG}", *flags]


def _pretrain_config(dataset):
  """The config `_pretrain_command` resolves, built here."""
  from avjax.configs import pretrain as pretrain_config_file  # pylint: disable=g-import-not-at-top
  config = pretrain_config_file.get_config(f"dataset={dataset},{CONFIG_ARG}")
  config.update_from_flattened_dict(
      {f"{g}.{k}": v for g, d in OVERRIDES.items() if isinstance(d, dict) for k, v in d.items()})
  config.update({k: v for k, v in OVERRIDES.items() if not isinstance(v, dict)})
  return config


def _loss_lines(workdir):
  """[(step, loss)] of metrics.jsonl in order (a resumed run replaces the lines of the steps
  it trains again)."""
  with open(os.path.join(workdir, metrics.METRICS_FILE), encoding="utf-8") as f:
    return [(m["step"], m["loss"]) for m in map(json.loads, f)]


def _committed(workdir, step):
  return os.path.exists(os.path.join(workdir, checkpoint.CHECKPOINT_DIR, str(step),
                                     "commit_success.txt"))


def _restore(workdir, step):
  ckpt = checkpoint.Checkpointer(workdir, every_steps=1)
  try:
    return jax.device_get(ckpt.restore(None, step=step)[0])
  finally:
    ckpt.close()


@pytest.fixture(scope="module")
def dataset(wide_tiny_dataset):
  return wide_tiny_dataset  # 9 training titles: 8 groups of distinct titles at B = 16, k = 2


@pytest.fixture(scope="module")
def pretraining(dataset, tmp_path_factory):
  """Two-process pretraining: killed after a checkpoint, resumed, then preempted.

  1. The coordinator (process 0) is SIGKILLed once checkpoint 2 is on disk.
  2. Restarted, the run resumes; SIGTERM to process 1 after its first step: both save
     at the same step and stop.
  """
  workdir = str(tmp_path_factory.mktemp("two_processes"))
  record = dict(workdir=workdir)
  logs = f"--log_dir={os.path.join(workdir, 'logs')}"
  launch = Launch(["--processes=2", "--grace=120", logs], _pretrain_command(dataset, workdir),
                  env=_env())
  # Killed after step 3, before checkpoint 4: the restart from 2 redoes step 3.
  launch.wait_for(lambda: (_committed(workdir, 2) and not _committed(workdir, 4)
                           and launch.when(r"\[p0\].*\bstep 3/") is not None),
                  900, "step 3 after checkpoint 2")
  os.kill(launch.pids()[0], signal.SIGKILL)
  killed_at = time.time() - launch.t0
  record["killed"] = dict(rc=launch.wait(timeout=300), out=launch.text(),
                          survivor_s=launch.when(r"\[local_multihost\] process 1: ") - killed_at,
                          wall_s=killed_at,
                          losses=_loss_lines(workdir))  # the resume drops the redone steps

  launch = Launch(["--processes=2", "--grace=120", logs], _pretrain_command(dataset, workdir),
                  env=_env())
  launch.wait_for(lambda: launch.when(r"\[p1\].*\bstep \d+/") is not None, 900,
                  "a resumed step")
  os.kill(launch.pids()[1], signal.SIGTERM)
  record["preempted"] = dict(rc=launch.wait(timeout=300), out=launch.text(),
                             wall_s=time.time() - launch.t0)
  return record


@pytest.mark.slow
def test_killing_the_coordinator_stops_the_other_process(pretraining):
  killed = pretraining["killed"]
  out = killed["out"]
  assert killed["rc"] != 0 and "FAILED: process 0 killed by SIGKILL first" in out, out[-3000:]
  # Process 1 stopped by itself (JAX's coordination service), not by the launcher.
  assert re.search(r"\[local_multihost\] process 1: (killed by SIGABRT|exited with status)",
                   out), out[-3000:]
  assert killed["survivor_s"] < EXIT_MARGIN_S
  assert "Terminating process because the JAX distributed service detected fatal errors" in out


@pytest.mark.slow
def test_sigterm_to_one_process_saves_and_stops_both(pretraining):
  preempted = pretraining["preempted"]
  out = preempted["out"]
  assert preempted["rc"] == 0, out[-3000:]
  resumed = {int(s) for s in re.findall(r"resumed from step (\d+)", out)}
  stops = [int(s) for s in re.findall(r"preempted at step (\d+): checkpoint saved", out)]
  assert len(resumed) == 1 and len(stops) == 2 and stops[0] == stops[1], out[-3000:]
  (start,), stop = resumed, stops[0]
  assert 2 <= start < stop < TOTAL_STEPS
  workdir = pretraining["workdir"]
  assert checkpoint.Checkpointer(workdir, every_steps=1).latest_step() == stop
  assert not os.path.exists(os.path.join(workdir, "export"))  # the run is not finished
  # Orbax wrote the checkpoint from both processes.
  state = os.path.join(workdir, checkpoint.CHECKPOINT_DIR, str(stop), "state")
  assert {"process_0", "process_1"} <= set(os.listdir(os.path.join(state, "array_metadatas")))


@pytest.fixture(scope="module")
def reference(pretraining, tmp_path_factory):
  """One process, 8 devices, the same config (config.json of the two-process run), up to
  the step where the two-process run was preempted."""
  from avjax.pretrain import task as pretrain  # pylint: disable=g-import-not-at-top
  workdir = pretraining["workdir"]
  config = ml_collections.ConfigDict(fileio.read_json(os.path.join(workdir, "config.json")))
  stop = checkpoint.Checkpointer(workdir, every_steps=1).latest_step()
  ref = str(tmp_path_factory.mktemp("one_process"))
  t0 = time.time()
  pretrain.train_and_evaluate(config, ref, max_steps=stop)
  return dict(workdir=ref, step=stop, wall_s=time.time() - t0)


@pytest.mark.slow
def test_losses_batchnorm_and_parameters_equal_one_process(pretraining, reference):
  want = dict(_loss_lines(reference["workdir"]))
  got = _loss_lines(pretraining["workdir"])
  print("\nstep  2 processes (before the kill, after)        1 process     max rel. diff")
  for step in sorted(want):
    two = [loss for s, loss in pretraining["killed"]["losses"] + got if s == step]
    diff = max(abs(x - want[step]) / abs(want[step]) for x in two) if two else float("nan")
    print(f"{step:4d}  {', '.join(f'{x:.7f}' for x in two):36s}  {want[step]:.7f}  {diff:.1e}")
  print(f"wall: 2 processes {pretraining['killed']['wall_s']:.0f} s to the kill after step 3, "
        f"{pretraining['preempted']['wall_s']:.0f} s resumed to the preemption; 1 process "
        f"{reference['wall_s']:.0f} s for all {reference['step']} steps")
  assert sorted(want) == list(range(1, reference["step"] + 1))
  assert [s for s, _ in got] == sorted(want)  # one line per step, also after the resume
  np.testing.assert_allclose(dict(got)[1], want[1], rtol=FIRST_LOSS_RTOL)
  for step, loss in got:
    np.testing.assert_allclose(loss, want[step], rtol=LOSS_RTOL, err_msg=f"step {step}")
  # Step 3 was done twice (before the kill and after the restart from checkpoint 2): the
  # same two-process program on the same batch gives the same loss.
  redone = [loss for step, loss in pretraining["killed"]["losses"] + got if step == 3]
  assert len(redone) == 2
  np.testing.assert_allclose(redone[1], redone[0], rtol=1e-6)

  # The saved states: BatchNorm statistics (synchronised over both processes) and
  # parameters as in the one-process run, within the drift the losses show (statistics
  # of each host's half batch would be off by about their own size).
  two = _restore(pretraining["workdir"], reference["step"])
  one = _restore(reference["workdir"], reference["step"])
  assert int(two["step"]) == int(one["step"]) == reference["step"]
  for col in ("batch_stats", "params"):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(two[col]),
                            jax.tree.leaves(one[col])):
      np.testing.assert_allclose(a, b, rtol=LOSS_RTOL, atol=1e-4,
                                 err_msg=f"{col}{jax.tree_util.keystr(path)}")


@pytest.fixture(scope="module")
def export_two(pretraining, tmp_path_factory):
  """python -m avjax.export as two processes, with a Kubernetes Indexed Job's variables."""
  output = str(tmp_path_factory.mktemp("export_two"))
  launch = Launch(["--processes=2", "--variables=k8s"], [
      sys.executable, "-m", "avjax.export", f"--workdir={pretraining['workdir']}",
      f"--output={output}"], env=_env())
  assert launch.wait(timeout=600) == 0, launch.text()[-3000:]
  return dict(path=output, out=launch.text())


@pytest.mark.slow
def test_export_and_discrepancy_equal_one_process(pretraining, export_two, tmp_path):
  """The export, and python -m avjax.discrepancy, as two processes against the same
  commands' code in one process."""
  from avjax.data import pipeline  # pylint: disable=g-import-not-at-top
  from avjax.evals import offline  # pylint: disable=g-import-not-at-top
  workdir = pretraining["workdir"]
  step = checkpoint.Checkpointer(workdir, every_steps=1).latest_step()
  one_dir = tmp_path / "one"  # the one-process evaluation reads a copy of the run
  shutil.copytree(workdir, one_dir, ignore=shutil.ignore_patterns("logs"))

  assert "(JAX_COORDINATOR_ADDRESS, JOB_COMPLETION_INDEX): process 1 of 2" in export_two["out"]
  assert export_two["out"].count(f"exported f and g of step {step} of") == 2
  checkpoint.export_workdir(str(one_dir), str(tmp_path / "export_one"))
  two, config_two = checkpoint.load_export(export_two["path"])
  one, config_one = checkpoint.load_export(str(tmp_path / "export_one"))
  assert config_two == config_one
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(two), jax.device_get(one))

  t0 = time.time()
  launch = Launch(["--processes=2"], [sys.executable, "-m", "avjax.discrepancy",
                                      f"--workdir={workdir}"], env=_env())
  assert launch.wait(timeout=600) == 0, launch.text()[-3000:]
  two_s = time.time() - t0
  (got,) = fileio.read_json(os.path.join(workdir, "discrepancy.json"))["steps"]
  t0 = time.time()
  (want,) = offline.evaluate_workdir(str(one_dir), pipeline.EvalData, write=False)
  print(f"\ndiscrepancy of step {step}: 2 processes {two_s:.0f} s, 1 process "
        f"{time.time() - t0:.0f} s; kl {got['kl']} vs {want['kl']}")
  assert got["step"] == want["step"] == step
  assert got["num_snippets"] == want["num_snippets"] > 0
  assert got["pairs"] == want["pairs"]
  for key in ("kl", "mean"):
    for name, value in want[key].items():
      np.testing.assert_allclose(got[key][name], value, rtol=1e-5, err_msg=f"{key} {name}")
  np.testing.assert_allclose(got["gap"], want["gap"], rtol=1e-5, atol=1e-6)
  # Process 0 wrote the outputs once; no temporary files were left behind.
  assert os.path.exists(os.path.join(workdir, "discrepancy_hist.png"))
  assert not [f for f in os.listdir(workdir) if f.endswith(".tmp")]


@pytest.mark.slow
def test_finetuning_completes_and_tests_as_one_process(export_two, esc50_prepared, tmp_path):
  """Fine-tuning (tiny ESC-50) as two processes from the two-process export; evaluating
  the fine-tuned checkpoint in one process gives the same top-1."""
  from avjax.downstream import task as finetune  # pylint: disable=g-import-not-at-top
  data = esc50_prepared
  export = export_two["path"]
  run_dir = str(tmp_path / "finetune")
  launch = Launch(["--processes=2"], [
      sys.executable, "-m", "avjax.finetune", f"--workdir={run_dir}",
      f"--config=configs/downstream/esc50.py:data={data},split=1,init={export},runlocal",
      f"--config.total_steps={FINETUNE_STEPS}"], env=_env())
  assert launch.wait(timeout=900) == 0, launch.text()[-3000:]
  two = fileio.read_json(os.path.join(run_dir, finetune.RESULTS))
  assert two["step"] == FINETUNE_STEPS and two["num_test"] == 2

  one_dir = str(tmp_path / "finetune_one")
  shutil.copytree(run_dir, one_dir, ignore=shutil.ignore_patterns("logs", finetune.RESULTS))
  config = ml_collections.ConfigDict(fileio.read_json(os.path.join(one_dir, "config.json")))
  one = finetune.train_and_evaluate(config, one_dir)  # resumes at the end: tests only
  print(f"\nfine-tuned top-1: 2 processes {two['top1']} ({two['view_top1']} per view), "
        f"1 process {one['top1']} ({one['view_top1']})")
  assert (one["top1"], one["view_top1"], one["num_test"]) == (
      two["top1"], two["view_top1"], two["num_test"])


# Each process writes its rows of a batch-sharded array (process p: value p) and its
# share of a replicated one; restored in the same two processes, each checks what it sees.
_CHECKPOINT_SCRIPT = """
import sys, jax, numpy as np, orbax.checkpoint as ocp
from avjax import checkpoint, sharding
assert sharding.maybe_initialize_distributed()
mesh = sharding.make_mesh()
tree = dict(w=jax.jit(lambda: jax.numpy.arange(6.0), out_shardings=sharding.replicated(mesh))(),
            b=sharding.host_to_global(np.full((4, 3), jax.process_index(), np.float32), mesh))
with ocp.StandardCheckpointer() as c:
  c.save(sys.argv[1], tree, force=True)
with ocp.StandardCheckpointer() as c:
  back = c.restore(sys.argv[1], checkpoint.abstract_like(tree, jax.tree.map(
      lambda x: x.sharding, tree)))
for shard in back["b"].addressable_shards:
  assert (np.asarray(shard.data) == jax.process_index()).all(), shard.index
print("restored in process", jax.process_index(), "of", jax.process_count())
"""


def test_checkpoint_written_by_two_processes_restores_in_one(tmp_path):
  """Orbax writes one checkpoint from both processes; both restore it into their shards,
  and this one process (8 devices of one host: another topology, which the shardings
  stored in the checkpoint would refuse) restores the whole of it."""
  path = str(tmp_path / "ckpt")
  launch = Launch(["--processes=2"], [sys.executable, "-c", _CHECKPOINT_SCRIPT, path],
                  env=_env())
  assert launch.wait(timeout=300) == 0, launch.text()[-3000:]
  assert launch.text().count("restored in process") == 2
  assert set(os.listdir(os.path.join(path, "array_metadatas"))) == {"process_0", "process_1"}
  with ocp.StandardCheckpointer() as ckptr:
    tree = ckptr.restore(path, checkpoint.replicated_target(path))
  assert jax.device_count() == 8 and tree["b"].sharding.is_fully_replicated
  np.testing.assert_array_equal(jax.device_get(tree["b"]), np.repeat([0, 1], 12).reshape(8, 3))
  np.testing.assert_array_equal(jax.device_get(tree["w"]), np.arange(6.0))


def _first_batches(dataset, process_index, steps):
  """(title, snippet) ids process `process_index` of 2 reads in its first batches."""
  from avjax.data import pipeline  # pylint: disable=g-import-not-at-top
  config = _pretrain_config(dataset)
  it = pipeline.make_train_iterator(config.data, global_batch_size=config.batch_size,
                                    process_index=process_index, process_count=2,
                                    num_local_devices=4)
  ids = [set(zip(b["title_index"].tolist(), b["snippet_index"].tolist()))
         for b in (next(it) for _ in range(steps))]
  titles = it.title_ids
  it.close()
  return ids, titles


@pytest.mark.slow
def test_an_error_in_one_process_stops_the_other(dataset, tmp_path):
  """A bad record in process 1's share: process 1 fails at its first batch; process 0
  (the coordinator) must not wait for it for ever, nor for jax.distributed's five-minute
  shutdown: it stops within the heartbeat timeout."""
  (mine,), titles = _first_batches(dataset, 1, 1)
  others, _ = _first_batches(dataset, 0, 4)
  n, m = sorted(mine - set().union(*others))[0]
  bad = tmp_path / "bad"
  helpers.make_tiny_dataset(bad, **helpers.WIDE, corrupt={(titles[n], m): "jpeg"})
  heartbeat = 10
  launch = Launch(["--processes=2", "--grace=120", f"--heartbeat_timeout={heartbeat}"],
                  _pretrain_command(str(bad), str(tmp_path / "run")), env=_env())
  rc = launch.wait(timeout=600)
  out = launch.text()
  assert rc == 1 and "FAILED: process 1 exited with status 1 first" in out, out[-3000:]
  assert f"title {titles[n]} snippet {m}" in launch.text("[p1]")
  assert "BadRecordError" in launch.text("[p1]")
  assert re.search(r"\[local_multihost\] process 0: (killed by SIGABRT|exited with status)",
                   out), out[-3000:]
  assert "JAX distributed service detected fatal errors" in launch.text("[p0]")
  failed = launch.when(r"process 1 exited with status 1; the others")
  stopped = launch.when(r"\[local_multihost\] process 0: ")
  assert stopped - failed < heartbeat + EXIT_MARGIN_S


@pytest.mark.slow
def test_slurm_variables_and_each_process_reads_its_share(dataset, tmp_path):
  """Under srun's variables (pointing at localhost) the processes join one program, and
  each reads only its share of the k-groups: together exactly the one-process stream."""
  from avjax.pretrain import task as pretrain  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path)
  config = _pretrain_config(dataset)
  fileio.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
  steps = 3
  launch = Launch(["--processes=2", "--variables=slurm"], [
      sys.executable, os.path.join(ROOT, "tests", "multihost_input.py"),
      f"--workdir={workdir}", f"--steps={steps}"], env=_env())
  assert launch.wait(timeout=600) == 0, launch.text()[-3000:]
  shares = [fileio.read_json(os.path.join(workdir, f"input_process_{i}.json"))
            for i in range(2)]
  for i, share in enumerate(shares):
    assert (share["joined"], share["source"], share["process_index"]) == (True, "SLURM", i)
    assert (share["process_count"], share["local_devices"], share["devices"]) == (2, 4, 8)

  single = pretrain.train_iterator(config, start_step=0)  # this process: 1 of 1
  k = config.data.k
  for step in range(steps):
    want = next(single)
    got = [s["batches"][step] for s in shares]
    # Host p holds the p-th half of the global batch: whole groups, in stream order.
    for key, field in (("title", "title_index"), ("snippet", "snippet_index")):
      np.testing.assert_array_equal(got[0][key] + got[1][key], want[field])
    for key, field in (("video", "video"), ("audio", "audio")):
      np.testing.assert_allclose(got[0][key] + got[1][key],
                                 want[field].reshape(len(want[field]), -1).sum(1), rtol=1e-5)
    assert all(len(set(g["title"][j:j + k])) == 1 for g in got for j in range(0, 8, k))
    # The global batch put together from both processes is the one-process batch.
    for g in got:
      np.testing.assert_array_equal(g["global_title"], want["title_index"])
  single.close()
