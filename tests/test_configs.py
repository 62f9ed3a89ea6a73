"""Every file in configs/ builds, the sweeps list the paper's runs, and the launchers work.

Configs are built the way `python -m avjax.main` builds them: ml_collections config flags,
locked, with each sweep run's `--config.FIELD=VALUE` overrides on the command line.
"""

import contextlib
import glob
import importlib.util
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from unittest import mock

import pytest
import yaml
from absl import flags

from avjax import config_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_PY = os.path.join(ROOT, "launch", "sweep.py")


def _load(path, name):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


sweep = _load(SWEEP_PY, "avjax_launch_sweep")


def build(config, overrides=()):
  """The locked ConfigDict avjax.main gets from `--config=CONFIG` plus override flags."""
  argv = ["avjax.main", f"--config={config}", *overrides]
  flag_values = flags.FlagValues()
  config_args.define_config_flag("config", "", flag_values=flag_values, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def _args(config):
  """`configs/pretrain.py:a=1,b,c=x` -> {"a": "1", "b": "", "c": "x"}."""
  arg = config.partition(":")[2]
  return dict(item.partition("=")[::2] for item in arg.split(",") if item)


# Every dataset a sweep knows, named: a sweep leaves out the runs of a dataset not given.
DATASETS = {"sampling_k_w": "movie=/m,tv=/t", "jitter_tau": "movie=/m", "genres": "movie=/m",
            "comparison": "movie=/m,tv=/t", "scenes": "movie=/m,tv=/t"}


def _sweep_runs(name, arg=None):
  """The runs of sweep `name` with all its datasets given, plus `arg`."""
  path = os.path.join("configs", "sweeps", f"{name}.py")
  return sweep.load_sweep(f"{path}:{DATASETS[name]}" + (f",{arg}" if arg else ""))[1]


def _sweep(*args):
  """`python launch/sweep.py ARGS`, run in this process with the script's flags parsed
  afresh (test_print_mode_prints_one_command_per_run runs the script itself)."""
  values = flags.FlagValues()
  sweep._define_flags(values)  # pylint: disable=protected-access
  out, err, code = io.StringIO(), io.StringIO(), 0
  with mock.patch.object(sweep, "FLAGS", values), contextlib.redirect_stdout(out), \
       contextlib.redirect_stderr(err):
    try:
      sweep.main(values([SWEEP_PY, *args]))
    except SystemExit as e:  # a message, as the interpreter prints it, and status 1
      code = e.code if isinstance(e.code, int) else 1
      if isinstance(e.code, str):
        print(e.code, file=sys.stderr)
  return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _sh(*args, env=None, **kwargs):
  return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, **(env or {})), **kwargs)


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
  monkeypatch.chdir(ROOT)  # config paths are relative to the repository root


# ---------------------------------------------------------------------------
# configs/pretrain.py and configs/downstream/*.py


@pytest.mark.parametrize("arg", ["", "runlocal", "runlocal,micro", "res=high",
                                 "dataset=a+b,k=8,w=64,jitter=0.5,tau=0.07"])
def test_pretrain_builds(arg):
  config = build(f"configs/pretrain.py:{arg}" if arg else "configs/pretrain.py")
  assert config.batch_size % config.data.k == 0
  if arg == "res=high":
    assert (config.data.short_side, config.data.crop_size) == (224, 200)
  if arg == "runlocal,micro":
    assert (config.model.video.stage_sizes, config.model.audio.stage_widths) == ((1,), (8,))
  if arg.startswith("dataset="):
    assert list(config.data.dataset) == ["a", "b"]
    assert (config.data.k, config.data.w, config.data.color_jitter) == (8, 64, 0.5)
    assert config.loss.normalize and config.loss.temperature == 0.07


def test_pretrain_rejects_unknown_resolution():
  with pytest.raises(flags.IllegalFlagValueError, match="res=.huge.: expected"):
    build("configs/pretrain.py:res=huge")


DOWNSTREAM = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "downstream", "*.py"))
                    if not os.path.basename(p).startswith("_"))


@pytest.mark.parametrize("path", DOWNSTREAM, ids=os.path.basename)
@pytest.mark.parametrize("arg", [None, "runlocal"])
def test_downstream_builds(path, arg):
  assert build(f"{path}:{arg}" if arg else path) is not None


# ---------------------------------------------------------------------------
# configs/sweeps/*.py


SWEEPS = {"sampling_k_w": 21, "jitter_tau": 7, "genres": 4, "comparison": 4, "scenes": 8}


def test_every_sweep_file_is_tested():
  found = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs", "sweeps",
                                                                     "*.py"))} - {"__init__"}
  assert found == set(SWEEPS)


@pytest.mark.parametrize("name", sorted(SWEEPS))
@pytest.mark.parametrize("arg", [None, "runlocal"])
def test_sweep_runs_build_with_their_overrides(name, arg):
  runs = _sweep_runs(name, arg)
  assert len(runs) == SWEEPS[name]
  for run in runs:
    overrides = sweep.main_flags(run, "unused")[2:]
    config = build(run["config"], overrides)
    for key, value in run["overrides"].items():
      got = config
      for part in key.split("."):
        got = got[part]
      assert got == (tuple(value) if isinstance(value, list) else value), (run["name"], key)
    assert config.data.k == (min(int(_args(run["config"])["k"]), 4) if arg else
                             int(_args(run["config"])["k"]))
    assert config.batch_size % config.data.k == 0


def test_scenes_sweep_runs_the_policies_beside_the_windows():
  runs = _sweep_runs("scenes")
  settings = {(_args(r["config"])["dataset"], _args(r["config"])["w"],
               _args(r["config"])["scenes"]) for r in runs}
  for dataset in ("/m", "/t"):
    assert {s[1:] for s in settings if s[0] == dataset} == {
        ("-1", "none"), ("16", "none"), ("-1", "distinct"), ("-1", "adaptive")}
  config = build(runs[2]["config"], [])
  assert config.data.scenes == "distinct" and config.data.w == -1


def test_sampling_k_w_is_table_1():
  mn = -1
  pairs = {"movie": set(), "tv": set()}
  for run in _sweep_runs("sampling_k_w"):
    args = _args(run["config"])
    pairs[{"/m": "movie", "/t": "tv"}[args["dataset"]]].add((int(args["k"]), int(args["w"])))
  assert pairs["movie"] == {
      (1, mn), (4, mn), (8, mn), (16, mn), (32, mn), (64, mn),
      (16, 64), (16, 128), (16, 256), (16, 512), (16, 1024), (16, 2048),
      (4, 4), (16, 16), (64, 64)}
  assert pairs["tv"] == {(1, mn), (8, mn), (16, mn), (8, 64), (8, 128), (16, 256)}


def test_jitter_tau_is_table_2():
  rows = set()
  for run in _sweep_runs("jitter_tau"):
    args = _args(run["config"])
    rows.add((int(args["k"]), float(args.get("jitter", 0)), float(args.get("tau", 0))))
  assert rows == {(1, 0, 0), (16, 0, 0), (1, 1.0, 0), (16, 0.5, 0), (16, 1.0, 0),
                  (16, 0, 0.07), (16, 0, 0.30)}


def test_genres_is_table_4():
  runs = _sweep_runs("genres")
  rows = {(frozenset(r["overrides"]["data.genres"]), r["overrides"]["data.genre_mix"])
          for r in runs}
  everything = {"Drama", "Comedy", "Action", "Horror", "Thriller", "Romance", "Sci-Fi"}
  assert rows == {(frozenset(everything - {"Drama", "Comedy"}), "natural"),
                  (frozenset({"Drama", "Comedy"}), "natural"),
                  (frozenset(everything), "uniform"), (frozenset(everything), "natural")}
  config = build(runs[0]["config"], sweep.main_flags(runs[0], "unused")[2:])
  assert config.data.title_budget == 1600
  assert config.data.crop_size == 112 and config.data.short_side > 112


def test_comparison_is_table_5():
  runs = {r["name"]: r for r in _sweep_runs("comparison")}
  configs = {name: build(r["config"], sweep.main_flags(r, "unused")[2:])
             for name, r in runs.items()}
  base_epochs = build("configs/pretrain.py").num_epochs
  assert configs["movie_k16_2x"].num_epochs == 2 * base_epochs
  assert list(configs["movie_k16_2x"].data.dataset) == ["/m"]
  for k in (8, 16, 32):
    c = configs[f"movie_tv_k{k}"]
    assert (list(c.data.dataset), c.data.k, c.num_epochs) == (["/m", "/t"], k, base_epochs)
  assert all(c.data.crop_size == 200 for c in configs.values())
  local = {r["name"]: r for r in _sweep_runs("comparison", "runlocal")}
  assert (build(local["movie_k16_2x"]["config"], sweep.main_flags(local["movie_k16_2x"], "")[2:])
          .num_epochs == 2 * build("configs/pretrain.py:runlocal").num_epochs)


# ---------------------------------------------------------------------------
# launch/sweep.py


def test_print_mode_prints_one_command_per_run():
  result = _sh(sys.executable, SWEEP_PY, "configs/sweeps/sampling_k_w.py:movie=/m,tv=/t",
               "--mode=print", "--workdir_root=runs/t1")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  runs = _sweep_runs("sampling_k_w")
  assert len(lines) == len(runs)
  for line, run in zip(lines, runs):
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "avjax.main"]
    assert argv[3] == f"--config={run['config']}"
    assert argv[4] == f"--workdir=runs/t1/{run['name']}"


def test_runs_of_a_dataset_not_given_are_left_out_and_said_so():
  result = _sweep("configs/sweeps/sampling_k_w.py:movie=/m",
                  "--mode=print")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert len(lines) == 15 and all("dataset=/m," in line for line in lines)
  assert "no tv=PATH" in result.stderr and "left out" in result.stderr
  for spec in ("sampling_k_w.py", "comparison.py:tv=/t", "genres.py:runlocal"):
    result = _sweep(f"configs/sweeps/{spec}", "--mode=print")
    assert result.returncode != 0 and not result.stdout
    assert "no dataset given" in result.stderr and "movie=PATH" in result.stderr


def test_print_mode_only_and_override_flags():
  result = _sweep("configs/sweeps/genres.py:movie=/m", "--mode=print",
                  "--only=DC_natural,all_uniform")
  assert result.returncode == 0, result.stderr
  lines = [shlex.split(line) for line in result.stdout.splitlines()]
  assert [a[4] for a in lines] == ["--workdir=runs/genres/DC_natural",
                                   "--workdir=runs/genres/all_uniform"]
  assert '--config.data.genres=("Drama", "Comedy")' in lines[0]
  assert "--config.data.genre_mix=uniform" in lines[1]


def test_unknown_sweep_file_and_run_name_are_clear_errors():
  result = _sweep("configs/sweeps/nope.py", "--mode=print")
  assert result.returncode != 0
  assert "sweep file 'configs/sweeps/nope.py' not found" in result.stderr
  assert "sampling_k_w.py" in result.stderr
  result = _sweep("configs/sweeps/comparison.py:movie=/m,tv=/t",
                  "--mode=print", "--only=movie_k99")
  assert result.returncode != 0
  assert "unknown run name(s) movie_k99" in result.stderr and "movie_tv_k8" in result.stderr
  result = _sweep("configs/sweeps/genres.py:movie=/m,budget=many",
                  "--mode=print")
  assert result.returncode != 0 and "budget='many': expected int" in result.stderr


def test_local_mode_skips_finished_runs_only(tmp_path):
  root = tmp_path / "runs"
  (root / "movie_tv_k8").mkdir(parents=True)
  (root / "movie_tv_k8" / "finished.json").write_text('{"step": 40, "num_steps": 40}')
  # An export alone (a run of zero steps exported one before) is not a finished run.
  (root / "movie_tv_k16" / "export").mkdir(parents=True)
  (root / "movie_tv_k16" / "export" / "model_config.json").write_text("{}")
  (root / "movie_tv_k32").mkdir(parents=True)
  (root / "movie_tv_k32" / "finished.json").write_text('{"step": 0, "num_steps": 0}')
  result = _sweep("configs/sweeps/comparison.py:movie=/m,tv=/t",
                  "--mode=local",
                  f"--workdir_root={root}", "--dry_run")
  assert result.returncode == 0, result.stderr
  assert "movie_tv_k8: skipped" in result.stdout
  assert "k16: skipped" not in result.stdout and "k32: skipped" not in result.stdout
  assert result.stdout.count("python -m avjax.main") == 3


def test_sweep_checks_every_run_config_before_running(tmp_path):
  sweep_file = tmp_path / "bad_sweep.py"
  sweep_file.write_text(
      "def get_sweep(arg=None):\n"
      "  return [dict(name='fine', config='configs/pretrain.py', overrides={'data.k': 4}),\n"
      "          dict(name='no_steps', config='configs/pretrain.py',\n"
      "               overrides={'num_epochs': 0})]\n")
  result = _sweep(str(sweep_file), "--mode=local",
                  f"--workdir_root={tmp_path / 'runs'}")
  assert result.returncode != 0
  assert "run no_steps" in result.stderr and "num_epochs=0" in result.stderr
  assert not (tmp_path / "runs").exists()


def test_slurm_mode_writes_an_array_over_the_runs(tmp_path):
  result = _sweep("configs/sweeps/sampling_k_w.py:movie=/m,tv=/t",
                  "--mode=slurm",
                  f"--workdir_root={tmp_path}", "--dry_run", "--nodes=2", "--partition=gpu")
  assert result.returncode == 0, result.stderr
  script = tmp_path / "slurm" / "array.sbatch"
  assert result.stdout.splitlines()[-1] == f"sbatch {script}"
  text = script.read_text()
  assert "#SBATCH --array=0-20\n" in text
  assert "#SBATCH --nodes=2\n" in text and "#SBATCH --partition=gpu\n" in text
  assert "#SBATCH --signal=TERM@120\n" in text and "#SBATCH --requeue\n" in text
  commands = (tmp_path / "slurm" / "commands.txt").read_text().splitlines()
  assert len(commands) == 21 and all(c.startswith("python -m avjax.main ") for c in commands)
  assert _sh("bash", "-n", str(script)).returncode == 0


@pytest.fixture
def fake_slurm(tmp_path):
  """`srun` and `scontrol` that record their arguments instead of running anything."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for tool in ("srun", "scontrol"):
    (bin_dir / tool).write_text(
        f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path}/{tool}.args\n')
    (bin_dir / tool).chmod(0o755)
  return dict(PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="77",
              SLURM_CPUS_PER_TASK="4", AVJAX_VENV=os.path.dirname(os.path.dirname(
                  sys.executable)))


def test_array_task_runs_its_line_and_requeues_when_not_finished(tmp_path, fake_slurm):
  root = tmp_path / "runs"
  result = _sweep("configs/sweeps/genres.py:movie=/m", "--mode=slurm",
                  f"--workdir_root={root}", "--dry_run")
  assert result.returncode == 0, result.stderr
  result = _sh("bash", str(root / "slurm" / "array.sbatch"),
               env=dict(fake_slurm, SLURM_ARRAY_TASK_ID="2"))
  assert result.returncode == 0, result.stderr
  run = _sweep_runs("genres")[2]
  srun_args = (tmp_path / "srun.args").read_text().splitlines()
  assert srun_args[srun_args.index("python"):] == sweep.command(run, str(root / run["name"]))
  # The fake srun wrote no export: the run stopped early, so the job requeues itself.
  assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "77"]


def test_slurm_sbatch_skips_an_exported_run(tmp_path, fake_slurm):
  (tmp_path / "wd" / "export").mkdir(parents=True)
  (tmp_path / "wd" / "export" / "model_config.json").write_text("{}")
  result = _sh("bash", "launch/slurm.sbatch", "configs/pretrain.py", str(tmp_path / "wd"),
               env=fake_slurm)
  assert result.returncode == 0 and "already finished" in result.stdout
  assert not (tmp_path / "srun.args").exists()


# ---------------------------------------------------------------------------
# launch/*.sh, launch/*.sbatch, launch/k8s/


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "launch", "*.sh"))
                                  + glob.glob(os.path.join(ROOT, "launch", "*.sbatch"))),
                         ids=os.path.basename)
def test_shell_syntax(path):
  result = _sh("bash", "-n", path)
  assert result.returncode == 0, result.stderr


def test_slurm_sbatch_directives():
  text = open(os.path.join(ROOT, "launch", "slurm.sbatch"), encoding="utf-8").read()
  for directive in ("--nodes=", "--ntasks-per-node=", "--gpus-per-task=1",
                    "--signal=TERM@120", "--requeue"):
    assert f"#SBATCH {directive}" in text
  assert "srun" in text and "python -m avjax.main" in text


def test_tpu_pod_runs_on_all_workers():
  result = _sh("bash", "launch/tpu_pod.sh", "my-tpu", "us-east5-a",
               "configs/pretrain.py:k=16", "/mnt/shared/runs/x", "--config.batch_size=256",
               env=dict(DRY_RUN="1", SKIP_SYNC="1"))
  assert result.returncode == 0, result.stderr
  gcloud = [shlex.split(line) for line in result.stdout.splitlines()
            if line.startswith("gcloud ")]
  assert all(c[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in c
             for c in gcloud)
  install, train = (c[-1].partition("=")[2] for c in gcloud)
  assert "EXTRAS=tpu,data source launch/env.sh" in install
  assert shlex.split(train.partition("&& source .venv/bin/activate && ")[2]) == ["AVJAX_DISTRIBUTED=1",
      "python", "-m", "avjax.main", "--config=configs/pretrain.py:k=16",
      "--workdir=/mnt/shared/runs/x", "--config.batch_size=256"]


def _jobset():
  with open(os.path.join(ROOT, "launch", "k8s", "jobset.yaml"), encoding="utf-8") as f:
    docs = {d["kind"]: d for d in yaml.safe_load_all(f)}
  return docs["Service"], docs["JobSet"]


def test_k8s_jobset_wires_up_jax_distributed():
  service, jobset = _jobset()
  assert service["spec"]["clusterIP"] == "None"
  assert jobset["spec"]["network"]["subdomain"] == service["metadata"]["name"]
  (rjob,) = jobset["spec"]["replicatedJobs"]
  job = rjob["template"]["spec"]
  pod = job["template"]["spec"]
  (container,) = pod["containers"]
  env = {e["name"]: e for e in container["env"]}
  assert job["completionMode"] == "Indexed"
  assert job["parallelism"] == job["completions"] == int(env["JAX_NUM_PROCESSES"]["value"])
  assert (env["JAX_PROCESS_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
          == "metadata.annotations['batch.kubernetes.io/job-completion-index']")
  host = (f"{jobset['metadata']['name']}-{rjob['name']}-0-0."
          f"{jobset['spec']['network']['subdomain']}")
  assert env["JAX_COORDINATOR_ADDRESS"]["value"] == f"{host}:1234"
  assert pod["terminationGracePeriodSeconds"] >= 120
  assert pod["restartPolicy"] == "Never"
  mounts = {m["name"] for m in container["volumeMounts"]}
  assert {v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v} <= mounts
  assert "python -m avjax.main" in container["args"][0]


def test_k8s_container_saves_on_sigterm_and_fails_unfinished_runs(tmp_path):
  """The pod's script passes SIGTERM on and exits non-zero when no export was written."""
  script = _jobset()[1]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"][
      "spec"]["containers"][0]["args"][0]
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "python").write_text(
      "#!/bin/bash\n"
      f"trap 'echo saved > {tmp_path}/saved; exit 0' TERM\n"
      f"touch {tmp_path}/started\n"
      "while true; do sleep 0.05; done\n")
  (bin_dir / "python").chmod(0o755)
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", CONFIG="c",
             WORKDIR=str(tmp_path / "wd"))
  proc = subprocess.Popen(["bash", "-c", script], env=env)
  deadline = time.time() + 10
  while not (tmp_path / "started").exists() and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=10) == 143
  assert (tmp_path / "saved").read_text().strip() == "saved"
  (tmp_path / "wd" / "export").mkdir(parents=True)
  (tmp_path / "wd" / "export" / "model_config.json").write_text("{}")
  assert subprocess.run(["bash", "-c", script], env=env, timeout=10).returncode == 0
