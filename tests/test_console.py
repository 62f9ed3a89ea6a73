"""What a user sees: a quiet console, a full log file, fast --help, and commands that work
from any folder and write nothing when they fail to start (the demo's console:
tests/test_install.py)."""

import os
import subprocess
import sys
import textwrap

import pytest

import helpers
from avjax import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# python -m avjax.<verb> (and launch/sweep.py): every command a user runs.
COMMANDS = ["avjax.main", "avjax.finetune", "avjax.discrepancy", "avjax.ingest",
            "avjax.synthetic", "avjax.prepare_downstream", "avjax.export",
            "avjax.finetune_all", "avjax.benchmark", "avjax.plots", "launch/sweep.py"]


def _env(**extra):
  """The environment of a command run by hand, on this checkout."""
  return helpers.command_env(PYTHONPATH=ROOT, **extra)


@pytest.mark.slow
def test_help_of_every_command_does_not_import_tensorflow(tmp_path):
  procs = {}
  for command in COMMANDS:
    if command.endswith(".py"):
      run = f"runpy.run_path({os.path.join(ROOT, command)!r}, run_name='__main__')"
    else:
      run = f"runpy.run_module({command!r}, run_name='__main__', alter_sys=True)"
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = [{command!r}, "--help"]
        try:
          {run}
        except SystemExit:
          pass
        print("tensorflow imported" if "tensorflow" in sys.modules else "no tensorflow")
        """)
    procs[command] = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=_env(),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
  for command, proc in procs.items():
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (command, err[-2000:])
    assert "--help" in out or "flags" in out.lower(), (command, out[:500])  # help was shown
    assert out.splitlines()[-1] == "no tensorflow", command


_CHATTY = """
import logging as std_logging, os, subprocess, sys
from absl import app
from avjax import console

def main(argv):
  console.setup()
  std_logging.getLogger("orbax.checkpoint").info("ORBAX-INFO-BURST")
  std_logging.getLogger("jax._src.xla_bridge").info("LIBTPU-PROBE")
  with console.native_output_to_log():
    os.write(2, b"NATIVE-BANNER\\n")
  console.attach_log(sys.argv[1])
  with console.children_output_to_log():
    subprocess.run([sys.executable, "-c", "import os; os.write(2, b'CHILD-OUTPUT\\\\n')"])
  std_logging.getLogger("some.library").error("LIBRARY-ERROR")
  console.done("DONE-LINE", result="RESULT-PATH")

app.run(main)
"""


@pytest.mark.parametrize("verbosity", ["0", "1"])
def test_library_chatter_goes_to_the_log_file_only(tmp_path, verbosity):
  script = tmp_path / "chatty.py"
  script.write_text(_CHATTY)
  proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=_env(
      AVJAX_VERBOSITY=verbosity), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  chatter = ("ORBAX-INFO-BURST", "LIBTPU-PROBE", "NATIVE-BANNER", "CHILD-OUTPUT")
  log = (tmp_path / console.LOG_FILE).read_text()
  # Everything, also what came before the log file opened; verbose, what native code and
  # child processes write goes straight to the console instead.
  in_log = chatter[:2] if verbosity == "1" else chatter
  for word in in_log + ("LIBRARY-ERROR", "DONE-LINE", "RESULT-PATH"):
    assert word in log, word
  for word in ("LIBRARY-ERROR", "DONE-LINE", "RESULT-PATH", str(tmp_path / console.LOG_FILE)):
    assert word in proc.stderr, word
  for word in chatter:
    assert (word in proc.stderr) == (verbosity == "1"), word


def test_progress_bars_in_a_file_only_for_long_loops(tmp_path, monkeypatch):
  """stderr to a file: a loop shorter than the delay leaves nothing; a longer one a bar."""
  path = tmp_path / "console.txt"
  with open(path, "w", encoding="utf-8") as stream:
    monkeypatch.setattr(sys, "stderr", stream)
    for _ in console.progress(range(3), desc="quick"):
      pass
    monkeypatch.setattr(console, "NOT_TTY_DELAY", 0.0)
    for _ in console.progress(range(3), desc="slow"):
      pass
  text = path.read_text(encoding="utf-8")
  assert "quick" not in text
  assert "slow" in text and "3/3" in text and text.endswith("\n")


@pytest.mark.slow
def test_a_failed_start_leaves_no_workdir_behind(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "avjax.main",
       f"--config=configs/pretrain.py:dataset={tmp_path / 'no_such_dataset'},runlocal",
       "--workdir=run"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
      timeout=300)
  assert proc.returncode != 0
  assert "no_such_dataset" in proc.stderr
  assert not (tmp_path / "run").exists()  # no config.json, log, checkpoints/ or events
