"""Damaged data is found, never trained on: CRC-checked reads, start-up checks, --verify."""

import os
import subprocess
import sys

import numpy as np
import pytest

from avjax import fileio
from avjax.data import example
from avjax.data import pipeline
from avjax.data import records
from avjax.data import titles as titles_lib
from avjax.ingest import verify
from helpers import make_tiny_dataset, tiny_data_config

TITLES = [dict(id=f"m{i}", kind="movie", genres=["Drama"], split="train", num_snippets=4)
          for i in range(4)] + [dict(id="v0", kind="movie", genres=["Drama"], split="val",
                                     num_snippets=3)]


@pytest.fixture()
def dataset(tmp_path):
  path = str(tmp_path / "ds")
  make_tiny_dataset(path, TITLES)
  return path


def flip_byte(dataset, title_id, snippet, where=0.5):
  """Flips one byte inside the data of a snippet's record (not its framing)."""
  entry = next(t for t in records.load_manifest(dataset)["titles"] if t["id"] == title_id)
  offset, length = records.load_index(os.path.join(dataset, entry["index"]))[snippet]
  pos = int(offset) + 12 + int(length * where)
  with open(os.path.join(dataset, entry["records"]), "r+b") as f:
    f.seek(pos)
    byte = f.read(1)
    f.seek(pos)
    f.write(bytes([byte[0] ^ 0x5A]))


def _train(config, batch, **kwargs):
  return pipeline.make_train_iterator(config, global_batch_size=batch, process_index=0,
                                      process_count=1, num_local_devices=1, **kwargs)


def test_a_flipped_byte_is_found_by_the_reader(dataset):
  flip_byte(dataset, "m1", 2, where=0.9)  # in the audio: it would still decode
  reader = records.SnippetReader(dataset)
  assert example.decode_snippet_numpy(reader.read("m1", 1))["snippet_index"] == 1
  with pytest.raises(records.CorruptRecordError,
                     match=r"title m1 snippet 2: .*m1\.tfrecord: record at byte \d+: data CRC"):
    reader.read("m1", 2)
  reader.close()
  # Unverified, the damaged snippet decodes: this is what trained silently before.
  with records.SnippetReader(dataset, verify=False) as unverified:
    assert example.decode_snippet_numpy(unverified.read("m1", 2))["snippet_index"] == 2


def test_a_damaged_length_field_is_found(dataset):
  entry = records.load_manifest(dataset)["titles"][0]
  offset, _ = records.load_index(os.path.join(dataset, entry["index"]))[1]
  with open(os.path.join(dataset, entry["records"]), "r+b") as f:
    f.seek(int(offset) + 9)  # inside the length's CRC
    byte = f.read(1)
    f.seek(int(offset) + 9)
    f.write(bytes([byte[0] ^ 0xFF]))
  with records.SnippetReader(dataset) as reader, pytest.raises(
      records.CorruptRecordError, match="snippet 1: .*length CRC mismatch"):
    reader.read(entry["id"], 1)


def test_training_stops_on_a_flipped_byte_or_skips_and_counts_it(dataset):
  flip_byte(dataset, "m2", 0)
  config = tiny_data_config(dataset, k=4)
  probe = _train(config, 4)
  step = next(s for s in range(100) if probe.title_ids[probe.sampler.group(s)[0]] == "m2")
  probe.close()
  with pytest.raises(pipeline.BadRecordError, match=r"title m2 snippet 0: .*data CRC mismatch"):
    next(_train(config, 4, start_step=step))
  config.skip_bad_records = True
  it = _train(config, 8)
  for _ in range(4):
    batch = next(it)
    assert "m2" not in {it.title_ids[n] for n in batch["title_index"]}
  assert it.num_skipped == 1
  it.close()


def test_eval_stops_on_a_flipped_byte(dataset):
  flip_byte(dataset, "v0", 1)
  config = tiny_data_config(dataset)
  with pytest.raises(pipeline.BadRecordError, match="title v0 snippet 1: .*CRC"):
    list(pipeline.make_eval_iterator(config, batch_size=2, process_index=0, process_count=1,
                                     num_local_devices=1))


def _truncate(dataset, title_id, drop=100):
  path = os.path.join(dataset, records.record_paths(dataset, title_id)[0])
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) - drop)


def test_truncated_or_missing_titles_are_found_at_start_up(dataset):
  _truncate(dataset, "m1")
  os.remove(os.path.join(dataset, records.record_paths(dataset, "m3")[1]))  # an index
  manifest = records.load_manifest(dataset)
  manifest["titles"].append(dict(manifest["titles"][0], id="gone",
                                 records="titles/gone.tfrecord", index="titles/gone.index.npy"))
  records.write_manifest(dataset, manifest)  # a manifest naming a title that is not there
  config = tiny_data_config(dataset, k=4)
  with pytest.raises(titles_lib.BadDatasetError) as error:
    _train(config, 4)  # before any batch is read
  message = str(error.value)
  assert "3 of 5 titles cannot be read" in message
  assert "title m1: records file" in message and "truncated" in message
  assert "title m3: index" in message and "missing" in message
  assert "title gone: records file" in message
  config.skip_bad_records = True
  it = _train(config, 4)
  assert it.title_ids == ["m0", "m2"]
  assert sorted(e["id"] for e, _ in it.left_out) == ["gone", "m1", "m3"]
  assert {it.title_ids[n] for n in next(it)["title_index"]} <= {"m0", "m2"}
  it.close()


def test_verify_reports_and_repair_makes_ingest_redo_the_titles(dataset, tmp_path):
  flip_byte(dataset, "m0", 3)
  _truncate(dataset, "m2", drop=10)
  # Entry files, as ingest writes them beside the records.
  for entry in records.load_manifest(dataset)["titles"]:
    fileio.write_json(os.path.join(dataset, "titles", f"{entry['id']}.json"), entry)
  report = verify.verify_dataset(dataset)
  assert sorted(report["damaged"]) == ["m0", "m2"]
  assert "snippet 3" in report["damaged"]["m0"] and "CRC" in report["damaged"]["m0"]
  assert report["checked_titles"] == 5 and report["checked_snippets"] == 19
  report = verify.verify_dataset(dataset, repair=True)
  assert not os.path.exists(os.path.join(dataset, "titles", "m0.json"))
  assert not os.path.exists(os.path.join(dataset, "titles", "m2.json"))
  assert os.path.exists(os.path.join(dataset, "titles", "m1.json"))
  assert [t["id"] for t in records.load_manifest(dataset)["titles"]] == ["m1", "m3", "v0"]
  assert not verify.verify_dataset(dataset)["damaged"]


def test_verify_command_exit_status(dataset):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  cmd = [sys.executable, "-m", "avjax.ingest", f"--verify={dataset}"]
  clean = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  assert clean.returncode == 0, clean.stderr[-2000:]
  assert "5 titles, 19 snippets: no damage" in clean.stdout
  flip_byte(dataset, "m3", 1)
  damaged = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  assert damaged.returncode == 1
  assert "m3" in damaged.stdout and "snippet 1" in damaged.stdout
  assert np.load(os.path.join(dataset, "titles", "m3.index.npy")).shape == (4, 2)


def test_the_benchmark_measures_reading_with_and_without_the_check(dataset):
  from avjax.bench import input as input_bench  # pylint: disable=g-import-not-at-top
  seconds = input_bench._reader_seconds_per_snippet(dataset, alternations=2, count=8)  # pylint: disable=protected-access
  assert set(seconds) == {True, False} and all(s > 0 for s in seconds.values())
  flip_byte(dataset, "m1", 2)  # the measure reads through the checking reader
  with pytest.raises(records.CorruptRecordError):
    input_bench._reader_seconds_per_snippet(dataset, alternations=2, count=64)  # pylint: disable=protected-access


def test_the_decode_parallelism_benchmark_has_its_own_section(monkeypatch):
  """--num_parallel: the default and each value given, measured in the same rounds, in a
  table under its own heading (the CRC figures' section is left as it is)."""
  import types  # pylint: disable=g-import-not-at-top
  from avjax.bench import input as input_bench  # pylint: disable=g-import-not-at-top
  from avjax.data import ops  # pylint: disable=g-import-not-at-top
  seen = {}

  def measure(configs, groups, steps, rounds):
    seen.update(values=[c.num_parallel for c in configs], rounds=rounds)
    return [dict(rate=10.0 * (i + 1), cpu_per_snippet=0.01) for i in range(len(configs))]

  monkeypatch.setattr(input_bench, "_measure_together", measure)
  flags = types.SimpleNamespace(num_parallel=["2", "8"], crc="both")
  assert input_bench.section(flags) == input_bench.DECODE_TITLE
  assert input_bench.section(types.SimpleNamespace(num_parallel=None)) == input_bench.TITLE
  lines = input_bench._decode_parallelism("unused", 4, 30, flags.num_parallel, 2)  # pylint: disable=protected-access
  assert seen == dict(values=[-1, 2, 8], rounds=4)
  rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
  assert rows == [f"| -1 (the default) | {ops.parallel_calls(-1)} | 10.0 | 10.0 |",
                  "| 2 | 2 | 20.0 | 10.0 |", "| 8 | 8 | 30.0 | 10.0 |"]


def test_benchmark_turns_run_one_pipeline_at_a_time(monkeypatch):
  """A pipeline left open during another setting's turn would decode ahead into its
  prefetch buffer on that turn's time: each turn opens its own and closes it."""
  import types  # pylint: disable=g-import-not-at-top
  from avjax.bench import input as input_bench  # pylint: disable=g-import-not-at-top
  open_now, turns = set(), []

  class Fake:
    def __init__(self, config):
      assert not open_now, f"{sorted(open_now)} still open"
      self.n = config.num_parallel
      open_now.add(self.n)
      turns.append(self.n)

    def __next__(self):
      return {"video": np.zeros((4, 2)), "audio": np.zeros((4, 3))}

    def close(self):
      open_now.discard(self.n)

  monkeypatch.setattr(input_bench.pipeline, "make_train_iterator",
                      lambda config, **kwargs: Fake(config))
  configs = [types.SimpleNamespace(num_parallel=n, k=16) for n in (-1, 2)]
  results = input_bench._measure_together(configs, 4, 8, 4)  # pylint: disable=protected-access
  assert turns == [-1, 2, 2, -1, -1, 2, 2, -1] and not open_now  # ABBA, one at a time
  assert len(results) == 2 and all(r["rate"] > 0 for r in results)
