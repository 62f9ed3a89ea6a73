"""Orbax checkpoints: sharded restore, retention, preemption, backbone export."""

import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax import checkpoint
from avjax import loop
from avjax import sharding


def make_state(value):
  return dict(step=jnp.asarray(value, jnp.int32),
              params={"video_encoder": {"w": jnp.full((4, 3), float(value))},
                      "video_head": {"b": jnp.arange(3.0) + value}},
              rng=jax.random.key_data(jax.random.key(value)))


def test_save_restore_into_target_shardings(tmp_path):
  mesh = sharding.make_mesh()
  replicated = sharding.replicated(mesh)
  ckpt = checkpoint.Checkpointer(tmp_path, every_steps=10, keep=2)
  state = jax.device_put(make_state(7), replicated)
  assert ckpt.save(7, state, {"sampler_group": 28}, force=True)
  ckpt.close()

  ckpt = checkpoint.Checkpointer(tmp_path, every_steps=10, keep=2)
  assert ckpt.latest_step() == 7
  abstract = checkpoint.abstract_like(jax.eval_shape(lambda: make_state(0)),
                                      jax.tree.map(lambda _: replicated, make_state(0)))
  restored, meta = ckpt.restore(abstract)
  ckpt.close()
  assert meta == {"sampler_group": 28}
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    assert got.sharding == replicated
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_saving_small_replicated_arrays_compiles_no_slicing(tmp_path, caplog):
  """Small replicated arrays are written whole by one replica: Orbax's split among
  replicas would compile a slicing program per device and shape (seconds at the first
  save of a model)."""
  state = jax.device_put({"w": jnp.ones((16, 8)), "b": jnp.arange(24.0)},
                         sharding.replicated(sharding.make_mesh()))
  ckpt = checkpoint.Checkpointer(tmp_path, every_steps=10, keep=2)
  jax.clear_caches()  # slicing programs compiled by earlier tests would go unseen
  with jax.log_compiles(), caplog.at_level("WARNING"):
    assert ckpt.save(1, state, {}, force=True)
    ckpt.close()
  compiled = [r.getMessage() for r in caplog.records if "XLA compilation of" in r.getMessage()]
  assert not compiled, compiled
  ckpt = checkpoint.Checkpointer(tmp_path, every_steps=10, keep=2)
  restored, _ = ckpt.restore(None)
  ckpt.close()
  np.testing.assert_array_equal(restored["w"], np.ones((16, 8)))
  np.testing.assert_array_equal(restored["b"], np.arange(24.0))


@pytest.mark.parametrize("async_save", [True, False])
def test_a_failed_save_says_where_and_why_in_one_line(tmp_path, async_save):
  ckpt = checkpoint.Checkpointer(tmp_path, every_steps=1, async_save=async_save)
  # Where the checkpoints go stands a file: Orbax's write fails as on a broken disk.
  shutil.rmtree(ckpt.directory, ignore_errors=True)
  with open(ckpt.directory, "w", encoding="utf-8") as f:
    f.write("not a folder")
  with pytest.raises(checkpoint.CheckpointSaveError) as e:
    ckpt.save(3, make_state(3), {}, force=True)
    ckpt.close()  # an asynchronous save reports its failure when waited for
  message = str(e.value)
  assert "\n" not in message and len(message) < 700, message
  assert message.startswith(f"{ckpt.directory}: a checkpoint save ") and "failed: " in message
  assert "rerun the same command" in message
  ckpt.close()  # after the failure: logged, not raised again
  assert checkpoint.CheckpointSaveError in loop.STOPPING_ERRORS  # commands print one line


def test_keeps_last_n_and_every_mth(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path, every_steps=1, keep=2, keep_every_steps=4,
                                 async_save=False)
  for step in range(1, 10):
    ckpt.save(step, make_state(step), {"step": step})
  ckpt.close()
  assert sorted(ckpt.manager.all_steps()) == [4, 8, 9]


def test_should_save_follows_interval(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path, every_steps=5)
  assert [s for s in range(1, 16) if ckpt.should_save(s)] == [5, 10, 15]
  ckpt.close()


def test_only_the_training_loop_handles_sigterm(tmp_path):
  before = signal.getsignal(signal.SIGTERM)
  ckpt = checkpoint.Checkpointer(tmp_path, every_steps=2)  # read-only users too: no handler
  assert signal.getsignal(signal.SIGTERM) is before
  with loop.sigterm_flag() as flag:
    assert signal.getsignal(signal.SIGTERM) is not before
    assert not ckpt.reached_preemption(1, flag["raised"])
    os.kill(os.getpid(), signal.SIGTERM)
    assert ckpt.reached_preemption(2, flag["raised"])
  ckpt.close()
  assert signal.getsignal(signal.SIGTERM) is before


def test_export_keeps_backbones_only(tmp_path):
  variables = {
      "params": {"video_encoder": {"w": np.ones((2, 2), np.float32)},
                 "audio_encoder": {"w": np.zeros((3,), np.float32)},
                 "video_head": {"w": np.ones(5, np.float32)},
                 "audio_head": {"w": np.ones(5, np.float32)}},
      "batch_stats": {"video_encoder": {"mean": np.full(2, 0.5, np.float32)},
                      "audio_encoder": {"mean": np.full(3, 0.25, np.float32)}},
  }
  checkpoint.export_backbones(tmp_path / "export", variables, {"embed_dim": 8})
  restored, config = checkpoint.load_export(tmp_path / "export")
  assert config == {"embed_dim": 8}
  assert set(restored["params"]) == {"video_encoder", "audio_encoder"}
  np.testing.assert_array_equal(restored["batch_stats"]["audio_encoder"]["mean"],
                                variables["batch_stats"]["audio_encoder"]["mean"])


def test_load_export_of_a_non_export_names_the_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match="not an avjax export"):
    checkpoint.load_export(tmp_path)


def _variables(value):
  return {"params": {"video_encoder": {"w": np.full((2, 2), value, np.float32)},
                     "audio_encoder": {"w": np.full((3,), value, np.float32)}},
          "batch_stats": {"video_encoder": {"mean": np.full(2, value, np.float32)},
                          "audio_encoder": {"mean": np.full(3, value, np.float32)}}}


def test_a_killed_re_export_leaves_the_complete_export_whole(tmp_path, monkeypatch):
  out = str(tmp_path / "export")
  checkpoint.export_backbones(out, _variables(1.0), {"embed_dim": 8})

  def killed(*args):
    raise KeyboardInterrupt  # the re-export dies after writing its arrays
  with monkeypatch.context() as m:
    m.setattr(checkpoint.fileio, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
      checkpoint.export_backbones(out, _variables(2.0), {"embed_dim": 16})
  restored, config = checkpoint.load_export(out)
  assert config == {"embed_dim": 8}  # the complete export, untouched
  np.testing.assert_array_equal(restored["params"]["video_encoder"]["w"], 1.0)
  # Killed between its two renames: the next export puts the old one back first.
  os.rename(out, out + ".previous")
  with pytest.raises(FileNotFoundError, match=r"interrupted: rerun python -m avjax.export"):
    checkpoint.load_export(out)
  checkpoint.export_backbones(out, _variables(3.0), {"embed_dim": 4})
  restored, config = checkpoint.load_export(out)
  assert config == {"embed_dim": 4}
  np.testing.assert_array_equal(restored["params"]["audio_encoder"]["w"], 3.0)
  assert sorted(os.listdir(tmp_path)) == ["export"]  # no .partial, .previous or lock left


def test_a_second_export_into_the_same_folder_is_refused(tmp_path):
  out = str(tmp_path / "export")
  with checkpoint._export_lock(out):  # pylint: disable=protected-access
    with pytest.raises(checkpoint.dirlock.LockedError, match="another export"):
      checkpoint.export_backbones(out, _variables(1.0), {})
  assert not os.path.exists(out)


def test_export_of_a_wrong_folder_or_step_says_what_to_do(tmp_path):
  run = tmp_path / "finetune"
  run.mkdir()
  (run / "config.json").write_text('{"mode": "linear", "model": {"video": {}, "audio": {}}}')
  with pytest.raises(checkpoint.ExportError, match="a fine-tuning run .*mode='linear'"):
    checkpoint.export_workdir(str(run), str(tmp_path / "out"))
  (run / "config.json").write_text('{"model": {"video": {}, "audio": {}}}')
  ckpt = checkpoint.Checkpointer(str(run), every_steps=1, async_save=False)
  ckpt.save(2, dict(params=_variables(1.0)["params"]), {"step": 2})
  ckpt.close()
  with pytest.raises(checkpoint.ExportError, match="no checkpoint of step 3; steps there: 2"):
    checkpoint.export_workdir(str(run), str(tmp_path / "out"), step=3)
  with pytest.raises(FileNotFoundError, match="not a pretraining workdir"):
    checkpoint.export_workdir(str(tmp_path / "nothing"), str(tmp_path / "out"))
