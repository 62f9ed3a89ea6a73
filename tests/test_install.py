"""A non-editable install runs from any folder: the shipped configs travel with the package.
The demo (launch/demo.sh at a toy size) runs on it from outside the repository into a
relative workdir, with a short console, and its export fine-tunes there."""

import os
import shutil
import subprocess
import sys

import pytest

import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """avjax built as a wheel from a copy of the sources and installed into its own folder."""
  tmp = tmp_path_factory.mktemp("install")
  src = tmp / "src"
  src.mkdir()
  for name in ("setup.py", "README.md"):
    shutil.copy(os.path.join(ROOT, name), src / name)
  shutil.copytree(os.path.join(ROOT, "avjax"), src / "avjax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  pip = [sys.executable, "-m", "pip", "-q"]
  subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "whl"),
                        str(src)], check=True, timeout=300)
  wheel = next((tmp / "whl").glob("avjax-*.whl"))
  subprocess.run(pip + ["install", "--no-deps", "--target", str(tmp / "site"), str(wheel)],
                 check=True, timeout=300)
  elsewhere = tmp / "elsewhere"  # not the repository: nothing of it is on the path
  elsewhere.mkdir()
  env = helpers.command_env(PYTHONPATH=str(tmp / "site"), TF_CPP_MIN_LOG_LEVEL="2")
  return elsewhere, env, tmp / "site"


@pytest.mark.slow
def test_installed_package_runs_the_demo_and_finetunes_from_elsewhere(installed,
                                                                      esc50_prepared):
  elsewhere, env, site = installed
  where = subprocess.run([sys.executable, "-c", "import avjax; print(avjax.__file__)"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
  assert where.stdout.strip().startswith(str(site))

  demo_env = dict(env, TOY="1", AVJAX_SKIP_INSTALL="1")
  proc = subprocess.run(["bash", os.path.join(ROOT, "launch", "demo.sh"), "rel/demo"],
                        cwd=elsewhere, env=demo_env, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, timeout=900)
  out = proc.stdout.decode("utf-8", errors="replace")  # as written: no \r -> \n
  assert proc.returncode == 0, out[-4000:]
  work = elsewhere / "rel" / "demo"
  assert (work / "run" / "export" / "model_config.json").exists()
  assert (work / "run" / "discrepancy.json").exists()
  assert not os.path.exists(os.path.join(ROOT, "rel"))
  # A short console (progress bars redraw with \r, each ends as one line); the rest is in
  # the log file.
  assert out.count("\n") <= 40, out
  assert "compiling the update step" in out and "ETA" in out
  for chatter in ("checkpoint_manager", "oneDNN", "absl::InitializeLog", "libtpu", "| Name"):
    assert chatter not in out, chatter
  log = (work / "demo.log").read_text()
  assert "checkpoint_manager" in log and "| Name" in log

  proc = subprocess.run(
      [sys.executable, "-m", "avjax.finetune",
       f"--config=configs/downstream/esc50.py:data={esc50_prepared},runlocal",
       "--config.init=rel/demo/run/export", "--workdir=finetune"],
      cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  assert os.path.exists(elsewhere / "finetune" / "results.json")
