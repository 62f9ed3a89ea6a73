r"""Runs the pretraining runs of a sweep file (configs/sweeps/*.py), or prints or submits them.

  python launch/sweep.py configs/sweeps/sampling_k_w.py:movie=data/movie,tv=data/tv \
      --mode=local|print|slurm --workdir_root=runs/sampling_k_w [--only=NAME,...] [--dry_run]

Every run is `python -m avjax.main --config=CONFIG --workdir=WORKDIR_ROOT/NAME` plus its
`--config.FIELD=VALUE` overrides. Config, dataset and workdir paths are relative to the
current folder (`configs/...` also names the configs shipped in the package). Runs of a
dataset the sweep args do not name are left out (the sweep says which).

  --mode=print  prints one command per run, e.g. to paste or pipe into another launcher.
  --mode=local  runs them one after another on this host; a run that finished all its
                steps (WORKDIR/finished.json, written by the training loop after the
                export) is skipped, and an interrupted run resumes from its last
                checkpoint when the sweep is rerun. A run that exits 0 without finishing
                (SIGTERM) is not done.

Every run's config, with its overrides, is checked (avjax.validate) before any run starts.
  --mode=slurm  writes WORKDIR_ROOT/slurm/commands.txt (one command per line) and
                WORKDIR_ROOT/slurm/array.sbatch, a job array with one task per run that
                runs its line through launch/slurm.sbatch (one process per GPU, SIGTERM
                checkpoint and requeue, skip when exported), and submits it with sbatch.
                With --dry_run the files are written and the sbatch command only printed.
"""

import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys

from absl import app
from absl import flags

from avjax import config_args
from avjax import validate as config_validator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINISHED_MARKER = "finished.json"  # written by avjax.loop once the schedule is complete
SLURM_LAUNCHER = os.path.join("launch", "slurm.sbatch")

FLAGS = flags.FLAGS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SweepError(ValueError):
  """A sweep file, run name or run entry that is not what was expected."""


# ---------------------------------------------------------------------------
# Loading a sweep.


def load_sweep(spec):
  """`path/to/sweep.py[:ARGS]` -> (sweep name, list of runs) from its get_sweep(ARGS)."""
  path, _, arg = spec.partition(":")
  try:
    path = config_args.resolve(path)
  except FileNotFoundError:
    pass
  if not os.path.isfile(path):
    known = sorted(f for f in os.listdir(os.path.join(ROOT, "configs", "sweeps"))
                   if f.endswith(".py") and not f.startswith("_"))
    raise SweepError(f"sweep file {path!r} not found; the sweeps in configs/sweeps/ are: "
                     f"{', '.join(known)}")
  name = os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(f"avjax_sweep_{name}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not callable(getattr(module, "get_sweep", None)):
    raise SweepError(f"{path}: no get_sweep(arg) function")
  try:
    runs = module.get_sweep(arg or None)
  except ValueError as e:  # e.g. an unknown or mistyped sweep arg
    raise SweepError(f"{spec}: {e}") from None
  validate(runs, path)
  given = {n.strip() for n, _, v in (item.partition("=") for item in (arg or "").split(","))
           if v.strip()}
  for dataset in getattr(module, "DATASET_ARGS", ()):
    if dataset not in given:
      print(f"launch/sweep.py: no {dataset}=PATH in {spec!r}: the runs on that dataset are "
            "left out", file=sys.stderr)
  return name, runs


def validate(runs, path):
  if not runs:
    raise SweepError(f"{path}: get_sweep returned no runs")
  seen = set()
  for i, run in enumerate(runs):
    if not isinstance(run, dict) or set(run) != {"name", "config", "overrides"}:
      raise SweepError(f"{path}: run {i} must be dict(name=..., config=..., overrides=...), "
                       f"got {run!r}")
    if not _NAME.match(run["name"]):
      raise SweepError(f"{path}: run name {run['name']!r} is not usable as a folder name")
    if run["name"] in seen:
      raise SweepError(f"{path}: run name {run['name']!r} appears twice")
    seen.add(run["name"])
    for key in run["overrides"]:
      if not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", key):
        raise SweepError(f"{path}: run {run['name']}: override {key!r} must be a config "
                         "field path such as 'data.k' (no leading --config.)")


def select(runs, only):
  """The runs named in `only` (all when empty), in sweep order."""
  if not only:
    return runs
  names = [r["name"] for r in runs]
  unknown = [n for n in only if n not in names]
  if unknown:
    raise SweepError(f"unknown run name(s) {', '.join(unknown)}; this sweep has: "
                     f"{', '.join(names)}")
  return [r for r in runs if r["name"] in only]


# ---------------------------------------------------------------------------
# Commands.


def format_value(value):
  """A Python value as ml_collections' config flags parse it back."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (list, tuple)):
    # Sequence fields are tuples, parsed with ast.literal_eval; double quotes read best
    # inside the single quotes of a shell command.
    items = [json.dumps(v) if isinstance(v, str) else repr(v) for v in value]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
  return str(value)


def main_flags(run, workdir):
  return ([f"--config={run['config']}", f"--workdir={workdir}"]
          + [f"--config.{k}={format_value(v)}" for k, v in run["overrides"].items()])


def command(run, workdir, python="python"):
  return [python, "-m", "avjax.main"] + main_flags(run, workdir)


def workdir_of(run, workdir_root):
  return os.path.join(workdir_root, run["name"])


def is_finished(workdir):
  """Whether the run in `workdir` trained all of its (at least one) steps."""
  path = os.path.join(workdir, FINISHED_MARKER)
  try:
    with open(path, encoding="utf-8") as f:
      done = json.load(f)
    return int(done["num_steps"]) >= 1 and int(done["step"]) >= int(done["num_steps"])
  except (OSError, ValueError, KeyError, TypeError):
    return False


def check_run_configs(runs):
  """Each run's config with its overrides passes avjax.validate, before anything runs."""
  for run in runs:
    try:
      config = config_args.load_config(run["config"])
      config.update_from_flattened_dict(dict(run["overrides"]))
      config_validator.check(config)
    except (config_validator.ConfigError, ValueError, KeyError, AttributeError) as e:
      raise SweepError(f"run {run['name']}: {e}") from None


def check_config_files(runs):
  """Config paths are relative to the current folder, as avjax.main reads them."""
  for run in runs:
    path = run["config"].partition(":")[0]
    try:
      config_args.resolve(path)
    except FileNotFoundError as e:
      raise SweepError(f"run {run['name']}: {e}") from None


# ---------------------------------------------------------------------------
# Modes.


def run_local(runs, workdir_root, *, dry_run=False, keep_going=False):
  """Runs one after another; returns the names of the runs that failed."""
  failed = []
  for i, run in enumerate(runs):
    workdir = workdir_of(run, workdir_root)
    head = f"[sweep {i + 1}/{len(runs)}] {run['name']}"
    if is_finished(workdir):
      print(f"{head}: skipped, finished ({os.path.join(workdir, FINISHED_MARKER)})", flush=True)
      continue
    cmd = command(run, workdir, python=sys.executable)
    print(f"{head}: {shlex.join(command(run, workdir))}", flush=True)
    if dry_run:
      continue
    rc = _run_forwarding_sigterm(cmd)
    if rc == 0 and not is_finished(workdir):
      # Stopped early (SIGTERM saved a checkpoint): the rest would not get its turn either.
      print(f"{head}: stopped before the end; rerun the sweep to resume it", flush=True)
      return failed + [run["name"]]
    if rc != 0:
      print(f"{head}: failed with exit status {rc}", flush=True)
      failed.append(run["name"])
      if not keep_going:
        break
  return failed


def _run_forwarding_sigterm(cmd):
  """Runs cmd; a SIGTERM to the sweep goes to the run, which saves a checkpoint and exits."""
  proc = subprocess.Popen(cmd)
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
  try:
    return proc.wait()
  finally:
    signal.signal(signal.SIGTERM, previous)


def slurm_script(sweep_name, spec, num_runs, commands_path, log_dir, options):
  """The job-array script: task i runs line i+1 of commands_path via launch/slurm.sbatch."""
  array = f"0-{num_runs - 1}" + (f"%{options['max_parallel']}" if options["max_parallel"] else "")
  sbatch = [
      f"--job-name=avjax-{sweep_name}",
      f"--array={array}",
      f"--nodes={options['nodes']}",
      f"--ntasks-per-node={options['gpus_per_node']}",
      "--gpus-per-task=1",
      f"--cpus-per-task={options['cpus_per_task']}",
      f"--time={options['time']}",
      "--signal=TERM@120",
      "--requeue",
      "--open-mode=append",
      f"--output={os.path.join(log_dir, '%x-%A_%a.out')}",
  ]
  if options.get("partition"):
    sbatch.append(f"--partition={options['partition']}")
  if options.get("account"):
    sbatch.append(f"--account={options['account']}")
  lines = [
      "#!/bin/bash",
      f"# Written by launch/sweep.py for {spec}: one array task per run.",
      f"# Task i runs line i+1 of {commands_path} through launch/slurm.sbatch.",
  ]
  lines += [f"#SBATCH {o}" for o in sbatch]
  lines += [
      "set -euo pipefail",
      f"export AVJAX_ROOT={shlex.quote(ROOT)}",
      f"cd {shlex.quote(os.getcwd())}  # relative workdirs and datasets are relative to it",
      f"line=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {shlex.quote(commands_path)})",
      "echo \"[avjax] array task ${SLURM_ARRAY_TASK_ID}: ${line}\"",
      "# The line is `python -m avjax.main --config=CONFIG --workdir=WORKDIR [overrides]`.",
      "eval \"cmd=(${line})\"",
      "exec bash \"${AVJAX_ROOT}/" + SLURM_LAUNCHER + "\" \"${cmd[3]#--config=}\" "
      "\"${cmd[4]#--workdir=}\" \"${cmd[@]:5}\"",
  ]
  return "\n".join(lines) + "\n"


def write_slurm(sweep_name, spec, runs, workdir_root, options):
  """Writes commands.txt and array.sbatch under WORKDIR_ROOT/slurm; returns the script path."""
  slurm_dir = os.path.abspath(os.path.join(workdir_root, "slurm"))
  os.makedirs(slurm_dir, exist_ok=True)
  commands_path = os.path.join(slurm_dir, "commands.txt")
  script_path = os.path.join(slurm_dir, "array.sbatch")
  _write(commands_path, "".join(shlex.join(command(r, workdir_of(r, workdir_root))) + "\n"
                                for r in runs))
  _write(script_path, slurm_script(sweep_name, spec, len(runs), commands_path, slurm_dir,
                                   options))
  return script_path


def _write(path, text):
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def _define_flags(flag_values=flags.FLAGS):
  """Only when run as a script (tests parse into their own FlagValues): importing this file
  defines no global flags."""
  define = lambda kind, *args: getattr(flags, f"DEFINE_{kind}")(*args, flag_values=flag_values)
  define("enum", "mode", "print", ["local", "print", "slurm"],
         "Run one after another here, print the commands, or submit a SLURM array.")
  define("string", "workdir_root", None,
         "Each run's workdir is WORKDIR_ROOT/NAME. Default: runs/<sweep file name>.")
  define("list", "only", [], "Names of the runs to keep (default: all of them).")
  define("bool", "dry_run", False,
         "local: list what would run; slurm: write the script, print sbatch command.")
  define("bool", "keep_going", False, "local: go on with the next run after a failed one.")
  # SLURM resources of every array task (sbatch options given on the command line win).
  define("integer", "nodes", 1, "slurm: nodes per run.")
  define("integer", "gpus_per_node", 8, "slurm: GPUs per node, one process each.")
  define("integer", "cpus_per_task", 8, "slurm: CPU cores per process (input pipeline).")
  define("string", "time", "48:00:00", "slurm: time limit per allocation (runs requeue).")
  define("string", "partition", None, "slurm: partition.")
  define("string", "account", None, "slurm: account.")
  define("integer", "max_parallel", 0, "slurm: at most this many runs at once (0: no limit).")


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: python launch/sweep.py configs/sweeps/NAME.py[:ARGS] "
                         "--mode=local|print|slurm [--workdir_root=DIR] [--only=NAME,...]")
  spec = argv[1]
  try:
    sweep_name, runs = load_sweep(spec)
    runs = select(runs, FLAGS.only)
    check_config_files(runs)
    check_run_configs(runs)
  except SweepError as e:
    sys.exit(f"launch/sweep.py: {e}")
  workdir_root = FLAGS.workdir_root or os.path.join("runs", sweep_name)

  if FLAGS.mode == "print":
    for run in runs:
      print(shlex.join(command(run, workdir_of(run, workdir_root))))
  elif FLAGS.mode == "local":
    failed = run_local(runs, workdir_root, dry_run=FLAGS.dry_run, keep_going=FLAGS.keep_going)
    if failed:
      sys.exit(f"launch/sweep.py: not finished: {', '.join(failed)}")
  else:
    options = dict(nodes=FLAGS.nodes, gpus_per_node=FLAGS.gpus_per_node,
                   cpus_per_task=FLAGS.cpus_per_task, time=FLAGS.time,
                   partition=FLAGS.partition, account=FLAGS.account,
                   max_parallel=FLAGS.max_parallel)
    script = write_slurm(sweep_name, spec, runs, workdir_root, options)
    sbatch = ["sbatch", script]
    print(f"wrote {script} ({len(runs)} array tasks)")
    if FLAGS.dry_run:
      print(shlex.join(sbatch))
      return
    try:
      sys.exit(subprocess.call(sbatch))
    except FileNotFoundError:
      sys.exit("launch/sweep.py: sbatch not found; submit from a SLURM login node, or run "
               f"`{shlex.join(sbatch)}` there")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
