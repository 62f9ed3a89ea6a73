"""avjax.storage: paths with a scheme, and a dataset read by the training input from one."""

import os
import uuid

import numpy as np
import pytest

from avjax import storage
from avjax.data import pipeline
from avjax.data import records
from avjax.data import titles as titles_lib

from helpers import make_tiny_dataset, tiny_data_config  # pylint: disable=g-bad-import-order


def ram(name):
  """A fresh folder on TensorFlow's in-memory file system, a stand-in for a bucket."""
  return f"ram://{name}_{uuid.uuid4().hex}"


def copy_tree(src, dst):
  for folder, _, files in os.walk(src):
    for f in files:
      rel = os.path.relpath(os.path.join(folder, f), src).replace(os.sep, "/")
      storage.makedirs(storage.dirname(storage.join(dst, rel)))
      storage.copy(os.path.join(folder, f), storage.join(dst, rel))


def test_path_strings_keep_their_scheme():
  assert storage.scheme("gs://b/x") == "gs" and storage.scheme("/data/x") is None
  assert storage.join("gs://b/ds", "titles", "a.json") == "gs://b/ds/titles/a.json"
  assert storage.dirname("s3://b/ds/titles/a.json") == "s3://b/ds/titles"
  assert storage.normpath("gs://b/videos/../list/./x.mp4") == "gs://b/list/x.mp4"
  assert storage.relpath("gs://b/in/shows/s/e.mp4", "gs://b/in") == "shows/s/e.mp4"
  assert storage.relpath("gs://b/in/x.mp4", "gs://b/in/") == "x.mp4"
  assert storage.abspath("gs://b/x") == "gs://b/x"
  assert storage.abspath("x") == os.path.abspath("x")


def test_files_through_a_non_local_file_system(tmp_path):
  root = ram("storage")
  storage.makedirs(storage.join(root, "titles"))
  storage.write_json(storage.join(root, "titles", "a.json"), {"id": "a", "n": [1, 2]})
  (tmp_path / "blob").write_bytes(bytes(range(256)) * 1000)
  storage.publish(str(tmp_path / "blob"), storage.join(root, "titles", "a.tfrecord"))
  storage.publish(str(tmp_path / "blob"), storage.join(root, "titles", "a.tfrecord"))  # again
  assert [storage.basename(p) for p in storage.glob(storage.join(root, "titles", "*"))] == [
      "a.json", "a.tfrecord"]  # no temps
  assert storage.glob(storage.join(root, "titles", "*.json")) == [
      storage.join(root, "titles", "a.json")]
  assert storage.read_json(storage.join(root, "titles", "a.json")) == {"id": "a", "n": [1, 2]}
  assert storage.getsize(storage.join(root, "titles", "a.tfrecord")) == 256000
  with storage.open(storage.join(root, "titles", "a.tfrecord")) as f:
    f.seek(1000)
    assert f.read(3) == bytes([1000 % 256, 1001 % 256, 1002 % 256])
  walked = list(storage.walk(root))
  assert [w[0] for w in walked] == [root, storage.join(root, "titles")]


def test_training_input_reads_a_dataset_on_a_non_local_file_system(tmp_path):
  local = str(tmp_path / "ds")
  make_tiny_dataset(local)
  remote = ram("dataset")
  copy_tree(local, remote)
  assert titles_lib.pooled_manifest(remote)["titles"] == [
      dict(t, dataset_dir=remote) for t in records.load_manifest(local)["titles"]]
  batches = []
  for path in (local, remote):
    it = pipeline.make_eval_iterator(tiny_data_config(path), batch_size=8, process_index=0,
                                     process_count=1, num_local_devices=1)
    batches.append(next(iter(it)))
  for key in ("video", "audio", "title_index", "snippet_index"):
    np.testing.assert_array_equal(batches[1][key], batches[0][key])
  with pytest.raises(FileNotFoundError, match="no manifest"):
    records.load_manifest(ram("missing"))


def test_damage_in_a_dataset_on_a_bucket_is_found(tmp_path):
  # pylint: disable=g-import-not-at-top
  from avjax.ingest import verify
  local = str(tmp_path / "ds")
  make_tiny_dataset(local)
  manifest = records.load_manifest(local)
  first, second = manifest["titles"][0], manifest["titles"][1]
  path = os.path.join(local, first["records"])  # a flipped byte in the first title
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x5A
  open(path, "wb").write(bytes(data))
  path = os.path.join(local, second["records"])  # the second one truncated
  data = open(path, "rb").read()
  open(path, "wb").write(data[:-100])
  root = ram("damaged")
  copy_tree(local, root)
  good, bad = records.check_titles(manifest["titles"], root)  # the start-up check
  assert [(e["id"], "truncated" in why) for e, why in bad] == [(second["id"], True)]
  assert first in good
  report = verify.verify_dataset(root, repair=True)
  assert set(report["damaged"]) == {first["id"], second["id"]}
  assert "CRC mismatch" in report["damaged"][first["id"]]
  assert report["repaired"] == sorted([first["id"], second["id"]])
  assert not storage.exists(storage.join(root, "titles", f"{first['id']}.json"))
  assert {t["id"] for t in records.load_manifest(root)["titles"]}.isdisjoint(report["damaged"])
