"""Test setup: 8 simulated CPU devices for sharding tests, TensorFlow kept off GPUs, and the
tiny datasets that many test files read, made once per test session."""

import collections
import os

# Must happen before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Flax inits draw one threefry key per parameter; XLA:CPU compiles those ~4x slower than
# the "rbg" generator, which keeps the suite's many tiny-model inits fast (in the commands
# the tests start too: they inherit the environment).
os.environ["JAX_DEFAULT_PRNG_IMPL"] = "rbg"

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

# pytest-xdist (launch/test.sh: --dist loadgroup) runs the tests of a group in one worker: a
# file is a group, and these files share one, because their tiny pretraining runs have
# equal settings, so the later runs reuse the first one's jitted functions
# (sharding.reused) instead of compiling them again.
SHARED_GROUPS = {"test_pretrain.py": "tiny_pretraining", "test_loop.py": "tiny_pretraining"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
  """Groups for pytest-xdist, and the groups with the most slow tests first: the workers
  start on the long end-to-end runs, and short tests fill the end."""
  group = {}
  for item in items:
    name = os.path.basename(str(item.path))
    group[item] = SHARED_GROUPS.get(name, name)
    item.add_marker(pytest.mark.xdist_group(group[item]))
  slow = collections.Counter(group[item] for item in items if item.get_closest_marker("slow"))
  order = {g: i for i, g in enumerate(dict.fromkeys(group.values()))}
  items.sort(key=lambda item: (-slow[group[item]], order[group[item]]))


# Made once per test session (per pytest-xdist worker); read them, never change them (a
# test that damages or extends a dataset makes its own).


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
  """The tiny snippet dataset of helpers.make_tiny_dataset's defaults (a directory)."""
  import helpers  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.mktemp("tiny_dataset")
  helpers.make_tiny_dataset(path)
  return str(path)


@pytest.fixture(scope="session")
def wide_tiny_dataset(tmp_path_factory):
  """A tiny dataset with 9 training titles (6 movies, 3 shows of 2 episodes, one of each
  held out): enough for batches of 8 groups of distinct titles."""
  import helpers  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.mktemp("wide_tiny_dataset")
  helpers.make_tiny_dataset(path, **helpers.WIDE)
  return str(path)


@pytest.fixture(scope="session")
def esc50_prepared(tmp_path_factory):
  """A tiny ESC-50 in its standard layout, prepared (python -m avjax.prepare_downstream)."""
  import helpers  # pylint: disable=g-import-not-at-top
  from avjax.downstream import prepare  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("esc50")
  out = str(root / "prepared")
  prepare.prepare("esc50", helpers.make_esc50(str(root / "layout")), out, progress=False)
  return out


@pytest.fixture(scope="session")
def ucf101_prepared(tmp_path_factory):
  """A tiny UCF101 in its standard layout, prepared with the default sizes."""
  import helpers  # pylint: disable=g-import-not-at-top
  from avjax.downstream import prepare  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("ucf101")
  out = str(root / "prepared")
  prepare.prepare("ucf101", helpers.make_ucf101(str(root / "layout")), out, progress=False)
  return out


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
  """A 3.5-s clock clip (helpers.write_clock, 10 fps): one snippet at the default params."""
  import helpers  # pylint: disable=g-import-not-at-top
  path = str(tmp_path_factory.mktemp("clip") / "clip.mp4")
  helpers.write_clock(path, seconds=3.5, fps=10)
  return path
