"""Data identity on restart: the titles a run reads (ids, snippet counts, splits, entry
hashes) are saved with each checkpoint, and a restart on changed data is refused with the
titles added, removed and changed, unless allowed, which is recorded."""

import json
import os
import shutil

import pytest

import helpers
from avjax import loop
from avjax import resume
from avjax import sharding
from avjax.configs import pretrain as pretrain_config_file
from avjax.data import records
from avjax.data import titles as titles_lib
from avjax.pretrain import task as pretrain_task

A = {"t1": [6, "train", "aaaaaaaaaaaa"], "t2": [9, "train", "bbbbbbbbbbbb"],
     "t3": [12, "train", "cccccccccccc"]}
B = {"t1": [7, "train", "dddddddddddd"], "t3": [12, "val", "eeeeeeeeeeee"],
     "t9": [5, "train", "ffffffffffff"]}


def test_a_restart_on_changed_data_is_refused_with_the_titles(tmp_path):
  workdir = str(tmp_path / "run")
  loop.run(helpers.toy_task([], fingerprint=A), helpers.toy_config(), workdir)
  before = open(os.path.join(workdir, "config.json")).read()
  with pytest.raises(resume.ResumeDataError) as error:
    loop.run(helpers.toy_task([], fingerprint=B), helpers.toy_config(total_steps=8), workdir)
  message = str(error.value)
  assert "the dataset changed since the checkpoint at step 6" in message
  assert "  titles added (1): t9" in message and "  titles removed (1): t2" in message
  assert "t1 (snippets 6 -> 7)" in message and "t3 (split train -> val)" in message
  assert "--config.resume=allow_changes" in message
  assert open(os.path.join(workdir, "config.json")).read() == before
  assert not os.path.exists(os.path.join(workdir, resume.CONFIG_HISTORY))
  # The same data resumes without a word.
  starts = []
  loop.run(helpers.toy_task(starts, fingerprint=A), helpers.toy_config(total_steps=7), workdir)
  assert starts == [6]


def test_allow_changes_resumes_on_changed_data_and_records_it(tmp_path):
  workdir = str(tmp_path / "run")
  loop.run(helpers.toy_task([], fingerprint=A), helpers.toy_config(), workdir)
  starts = []
  state = loop.run(helpers.toy_task(starts, fingerprint=B),
                   helpers.toy_config(total_steps=8, resume="allow_changes"), workdir)
  assert starts == [6] and int(state["step"]) == 8
  (entry,) = resume.read_history(workdir)
  assert entry["step"] == 6 and entry["allowed_by"] == "resume=allow_changes"
  assert entry["data_changes"] == dict(added=["t9"], removed=["t2"], changed={
      "t1": "snippets 6 -> 7", "t3": "split train -> val"})
  # The checkpoints now carry the new data's identity: B resumes unchecked by A.
  loop.run(helpers.toy_task(starts, fingerprint=B), helpers.toy_config(total_steps=9), workdir)
  assert starts == [6, 8]
  assert [e.get("data_changes") is not None for e in resume.read_history(workdir)] == [True,
                                                                                      False]


@pytest.mark.slow
def test_the_pretraining_task_fingerprints_the_titles_it_reads(tiny_dataset, tmp_path):
  data = str(tmp_path / "data")
  shutil.copytree(tiny_dataset, data)
  config = pretrain_config_file.get_config(f"dataset={data},runlocal")
  config.data = helpers.tiny_data_config(data, k=1)  # 8 snippets: one per device
  config.batch_size = 8
  mesh = sharding.make_mesh()
  task = pretrain_task.build_task(config, str(tmp_path / "run"), start_step=0, writer=None,
                                  mesh=mesh)
  task.train_iter.close()
  manifest = records.load_manifest(data)
  train = [t for t in manifest["titles"] if t["split"] == "train"]
  assert sorted(task.fingerprint) == sorted(t["id"] for t in train)
  # A moved dataset keeps its identity; an edited entry or a re-grouped split does not.
  assert titles_lib.fingerprint([dict(t, dataset_dir="/elsewhere") for t in train]) == \
      task.fingerprint
  first = json.loads(json.dumps(task.fingerprint))  # as saved in a checkpoint's JSON
  manifest["titles"][0]["genres"] = ["noir", "musical", "test"]
  manifest["titles"][1]["split"] = "val" if manifest["titles"][1]["split"] == "train" else "train"
  records.write_manifest(data, manifest)
  task = pretrain_task.build_task(config, str(tmp_path / "run"), start_step=0, writer=None,
                                  mesh=mesh)
  task.train_iter.close()
  meta = dict(step=4, data_fingerprint=first)
  with pytest.raises(resume.ResumeDataError) as error:
    resume.check_data(config, "run", 4, meta, task.fingerprint)
  assert f"titles changed (1): {manifest['titles'][0]['id']} (entry changed" in str(error.value)
  assert f"titles removed (1): {manifest['titles'][1]['id']}" in str(error.value)
