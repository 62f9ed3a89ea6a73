"""Ingest on Apache Beam: the local path's dataset byte for byte, resumable, on any file system."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from avjax import fileio
from avjax import storage
from avjax.data import records
from avjax.data import titles as titles_lib
from avjax.ingest import discover
from avjax.ingest import params as ingest_params
from avjax.ingest import run as run_lib
from avjax.synthetic import generator as synthetic

beam_ingest = pytest.importorskip("avjax.ingest.beam")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMS = dict(short_side=36, val_fraction=0.5)
FLAGS = ["--short_side=36", "--val_fraction=0.5"]
TWO_PROCESSES = "direct_num_workers=2,direct_running_mode=multi_processing"
GOOD = ["movie000", "movie001", "show00_e00", "show00_e01"]
BAD = {"broken": "cannot open", "empty": "empty file"}
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
    [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
  """Two movies and a show of two episodes (2 snippets each), and two bad files."""
  d = tmp_path_factory.mktemp("beam_input")
  options = synthetic.Options(width=64, height=36, fps=10, scene_spans=(2, 3))
  synthetic.generate(str(d), movies=2, shows=1, episodes=2, minutes=0.12, seed=3,
                     options=options)
  (d / "movies" / "broken.mp4").write_text("not a video\n" * 50)
  (d / "movies" / "empty.mkv").write_bytes(b"")
  return str(d)


def ingest_cmd(collection, out, *extra):
  return [sys.executable, "-m", "avjax.ingest", f"--input={collection}", f"--output={out}",
          *FLAGS, *extra]


BEAM_FLAGS = ("--runner=DirectRunner", f"--beam_pipeline_options={TWO_PROCESSES}")


@pytest.fixture(scope="module")
def local(collection, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("local") / "ds")
  run_lib.ingest(collection, out, params=PARAMS, progress=False)
  return out


@pytest.fixture(scope="module")
def on_beam(collection, tmp_path_factory):
  """The command on the DirectRunner, 2 worker processes: (dataset dir, its run)."""
  out = str(tmp_path_factory.mktemp("beam") / "ds")
  proc = subprocess.run(ingest_cmd(collection, out, *BEAM_FLAGS), capture_output=True,
                        text=True, env=ENV, timeout=600, check=False)
  return out, proc


def files(dataset_dir, skip=()):
  """{relative path: bytes} of a dataset dir, temporaries and `skip` left out."""
  out = {}
  for folder, _, names in os.walk(dataset_dir):
    for name in names:
      rel = os.path.relpath(os.path.join(folder, name), dataset_dir)
      if not name.endswith(".tmp") and rel not in skip:
        with open(os.path.join(folder, name), "rb") as f:
          out[rel] = f.read()
  return out


@pytest.mark.slow
def test_beam_and_local_paths_write_the_same_dataset(local, on_beam):
  out, proc = on_beam
  assert proc.returncode == 1, proc.stderr[-3000:]  # bad files were skipped
  assert records.load_manifest(out) == records.load_manifest(local)
  assert [t["id"] for t in records.load_manifest(out)["titles"]] == GOOD
  assert {t["split"] for t in records.load_manifest(out)["titles"]} == {"train", "val"}
  got, want = files(out), files(local)
  assert sorted(got) == sorted(want)
  for rel in want:  # every title's records, index and entry, the manifest and the report
    assert got[rel] == want[rel], rel


@pytest.mark.slow
def test_a_failing_title_is_reported_with_its_reason(local, on_beam):
  out, proc = on_beam
  report = fileio.read_json(os.path.join(out, records.REPORT))
  reasons = {f["title_id"]: f["reason"] for f in report["failed"]}
  assert set(reasons) == set(BAD)
  for tid, why in BAD.items():
    assert reasons[tid].startswith(why), reasons[tid]
  assert report == fileio.read_json(os.path.join(local, records.REPORT))
  assert "skipped " in proc.stdout and "broken.mp4" in proc.stdout
  metrics = proc.stdout[proc.stdout.index("Beam metrics:"):].splitlines()[0]
  for counter in ("titles_done=4", "titles_skipped=2", "snippets=8", "skipped_cannot_open=1",
                  "skipped_empty_file=1"):
    assert counter in metrics, metrics


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(collection, on_beam, tmp_path):
  out = str(tmp_path / "ds")
  entries = os.path.join(out, records.TITLES_DIR)
  proc = subprocess.Popen(ingest_cmd(collection, out, *BEAM_FLAGS), env=ENV,  # pylint: disable=consider-using-with
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  try:
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
      if os.path.isdir(entries) and any(f.endswith(".json") for f in os.listdir(entries)):
        break
      time.sleep(0.05)
  finally:
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes
    proc.wait()
  done = len(run_lib.finished_entries(out))
  assert 1 <= done < len(GOOD), f"{done} titles finished before the kill"
  # The rerun in this process (the DirectRunner's in-memory mode): the same dataset again.
  report = beam_ingest.ingest(collection, out, runner="DirectRunner", params=PARAMS)
  assert (report["already_done"], report["ingested"]) == (done, len(GOOD) - done)
  assert report == fileio.read_json(os.path.join(out, records.REPORT))
  report_file = (records.REPORT,)
  assert files(out, skip=report_file) == files(on_beam[0], skip=report_file)


@pytest.mark.slow
def test_a_retried_title_writes_the_same_bytes_once(collection, local, tmp_path):
  out = str(tmp_path / "ds")
  title = next(t for t in discover.discover(collection) if t["id"] == "movie001")
  params = ingest_params.make_params(**PARAMS)
  fn = beam_ingest.IngestTitle(out, params)
  first = list(fn.process(title))
  again = list(fn.process(title))  # a retried bundle after the title finished
  assert first == again and first[0]["reason"] is None
  # A worker lost between the records and the entry file: the retry completes the title.
  os.remove(os.path.join(out, records.TITLES_DIR, "movie001.json"))
  assert list(fn.process(title)) == first
  assert files(out) == {k: v for k, v in files(local).items() if "movie001" in k}


@pytest.mark.slow
def test_ingest_and_reader_on_a_non_local_file_system(collection, local):
  """TensorFlow's ram:// file system stands in for a bucket: input, output and reader."""
  src, out = f"ram://avjax_in_{uuid.uuid4().hex}", f"ram://avjax_out_{uuid.uuid4().hex}"
  for rel in ("titles.csv", "movies/movie001.mp4", "shows/show00/e00.mp4", "movies/broken.mp4"):
    storage.makedirs(storage.dirname(storage.join(src, rel)))
    storage.copy(os.path.join(collection, rel), storage.join(src, rel))
  report = beam_ingest.ingest(src, out, runner="DirectRunner", params=PARAMS)
  assert [f["title_id"] for f in report["failed"]] == ["broken"]
  assert f"{src}/movies/broken.mp4" in report["failed"][0]["reason"]
  manifest, reference = titles_lib.pooled_manifest(out), records.load_manifest(local)
  want = {t["id"]: t for t in reference["titles"]}
  assert [t["id"] for t in manifest["titles"]] == ["movie001", "show00_e00"]
  for entry in manifest["titles"]:
    assert entry["source"].startswith(src)
    assert {k: v for k, v in entry.items() if k not in ("source", "dataset_dir")} == {
        k: v for k, v in want[entry["id"]].items() if k != "source"}
    for key in ("records", "index"):
      with storage.open(storage.join(out, entry[key])) as a, open(
          os.path.join(local, entry[key]), "rb") as b:
        assert a.read() == b.read()
  # The training input's reader, on the bucket-like path (random access through the index).
  remote = records.TitlesReader(manifest["titles"], max_open=1)
  with records.SnippetReader(local) as here:
    for n, entry in enumerate(manifest["titles"]):
      for m in reversed(range(entry["num_snippets"])):
        assert remote.read(n, m) == here.read(entry["id"], m)
  remote.close()


def test_a_beam_ingest_into_a_local_folder_takes_the_ingest_lock(collection, tmp_path):
  from avjax.ingest import lock as lock_lib  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "ds")
  with lock_lib.IngestLock(out):
    with pytest.raises(lock_lib.LockedError, match=f"PID {os.getpid()}"):
      beam_ingest.ingest(collection, out, runner="DirectRunner", params=PARAMS)
  assert not os.path.exists(os.path.join(out, records.TITLES_DIR))  # nothing written


def test_pipeline_options_come_through_one_flag():
  options = beam_ingest.pipeline_options("DirectRunner", TWO_PROCESSES).get_all_options()
  assert (options["direct_num_workers"], options["direct_running_mode"]) == (
      2, "multi_processing")
  options = beam_ingest.pipeline_options("DirectRunner", "", workers=3).get_all_options()
  assert options["direct_num_workers"] == 3
  options = beam_ingest.pipeline_options(
      "DataflowRunner", "project=p, region=r,temp_location=gs://b/tmp").get_all_options()
  assert (options["project"], options["region"], options["runner"]) == (
      "p", "r", "DataflowRunner")
  with pytest.raises(ValueError, match="no_such_option"):
    beam_ingest.pipeline_options("DirectRunner", "no_such_option=1")
  assert beam_ingest.reason_key("cannot open: [Errno 1] x") == "cannot_open"
  assert beam_ingest.reason_key("decode error near 3.2 s: boom") == "decode_error"
  assert beam_ingest.reason_key("empty file (0 bytes)") == "empty_file"


def test_help_loads_neither_tensorflow_nor_beam():
  code = ("import runpy, sys\nsys.argv = ['avjax.ingest', '--help']\n"
          "try:\n  runpy.run_module('avjax.ingest', run_name='__main__')\n"
          "except SystemExit:\n  pass\n"
          "loaded = [m for m in ('tensorflow', 'apache_beam') if m in sys.modules]\n"
          "assert not loaded, loaded\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                        cwd=ROOT, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "--runner" in proc.stdout + proc.stderr
