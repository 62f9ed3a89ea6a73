"""A non-editable install runs from any folder: the shipped configs travel with the package."""

import os
import shutil
import subprocess
import sys

import pytest



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
  env = dict(os.environ, PYTHONPATH=str(tmp / "site"), TF_CPP_MIN_LOG_LEVEL="2")
  return elsewhere, env, tmp / "site"


def _run(args, cwd, env):
  proc = subprocess.run([sys.executable, "-m"] + args, cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc


@pytest.mark.slow
def test_installed_package_pretrains_and_finetunes_from_elsewhere(installed, wide_tiny_dataset,
                                                                  esc50_prepared):
  elsewhere, env, site = installed
  where = subprocess.run([sys.executable, "-c", "import avjax; print(avjax.__file__)"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
  assert where.stdout.strip().startswith(str(site))

  _run(["avjax.main", f"--config=configs/pretrain.py:dataset={wide_tiny_dataset},k=2,runlocal",
        "--workdir=pretrain", "--config.total_steps=3", "--config.batch_size=16",
        "--config.data.num_frames=4", "--config.data.short_side=40",
        "--config.data.crop_size=32"], elsewhere, env)
  assert os.path.exists(elsewhere / "pretrain" / "export" / "model_config.json")

  _run(["avjax.finetune", f"--config=configs/downstream/esc50.py:data={esc50_prepared},runlocal",
        "--config.init=pretrain/export", "--workdir=finetune"], elsewhere, env)
  assert os.path.exists(elsewhere / "finetune" / "results.json")
