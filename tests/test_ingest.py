"""Ingest: snippet placement by timestamp, random access, splits, bad input, resume."""

import fractions
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from avjax import fileio
from avjax.data import example
from avjax.data import records
from avjax.ingest import discover
from avjax.ingest import params as ingest_params
from avjax.ingest import run as ingest
from avjax.synthetic import generator as synthetic
from avjax.ingest import title as ingest_title
from helpers import burst_times, read_clock, write_clock

PARAMS = dict(short_side=64)  # no upscaling: the frame code stays crisp


def meta(tid, kind="movie", show=None):
  return dict(id=tid, kind=kind, show=show, genres=[])


def check_snippets(dataset_dir, entry, frame_times):
  """Every stored frame is the last one at or before its target time; bursts are where due."""
  rate = 48000
  with records.SnippetReader(dataset_dir, manifest=dict(titles=[entry])) as reader:
    order = np.random.default_rng(0).permutation(entry["num_snippets"])  # random access
    for m in order:
      s = example.decode_snippet_numpy(reader.read(entry["id"], int(m)))
      assert (s["title_id"], s["snippet_index"]) == (entry["id"], m)
      assert s["start_time"] == pytest.approx(3.2 * m)
      assert len(s["frames"]) == 16 and s["audio"].shape == (153600,)
      targets = 3.2 * m + 0.2 * np.arange(16)
      expected = np.searchsorted(frame_times, targets + 1e-6, side="right") - 1
      assert [read_clock(f) for f in s["frames"]] == expected.tolist(), f"snippet {m}"
      env = np.convolve(np.abs(s["audio"].astype(np.float32)), np.ones(48) / 48, "same")
      for t in burst_times(entry["duration"]):
        c = int(round((t - 3.2 * m) * rate))
        if 960 <= c < 153600 - 960:
          peak = c - 960 + int(np.argmax(env[c - 960:c + 960]))
          assert abs(peak - c) <= 48, f"snippet {m}: burst at {t} s is {peak - c} samples off"


@pytest.fixture(scope="module")
def clocks(tmp_path_factory):
  """Good test titles: odd frame rates, variable frame rate, 44.1 kHz, mono and stereo."""
  d = tmp_path_factory.mktemp("clocks")
  titles = {}
  titles["ntsc"] = (write_clock(str(d / "ntsc.mp4"), seconds=10.1, rate=44100,
                                fps=fractions.Fraction(24000, 1001)), 10.1)
  rng = np.random.default_rng(1)
  vfr = np.cumsum(rng.integers(15, 300, size=200)) / 1000.0  # ms timestamps, as Matroska keeps
  vfr = np.concatenate([[0.0], vfr[vfr < 7.0]])
  titles["vfr"] = (write_clock(str(d / "vfr.mkv"), seconds=7.0, times=vfr, channels=1), 7.0)
  titles["pal"] = (write_clock(str(d / "pal.mov"), seconds=6.5, fps=25), 6.5)
  return d, titles


def test_frames_and_audio_are_where_their_timestamps_say(clocks, tmp_path):
  d, titles = clocks
  params = ingest_params.make_params(**PARAMS)
  for name, (times, seconds) in titles.items():
    path = str(next(d.glob(f"{name}.*")))
    entry = ingest_title.ingest_title(path, str(tmp_path), meta(name), params)
    assert entry["duration"] == pytest.approx(seconds, abs=0.05)
    assert entry["num_snippets"] == int(entry["duration"] // 3.2)
    assert entry["frame_size"] == [64, 96]
    assert os.path.exists(ingest_title.entry_path(str(tmp_path), name))
    check_snippets(str(tmp_path), entry, times)


def test_frames_are_resized_to_the_short_side(clocks, tmp_path):
  d, _ = clocks
  entry = ingest_title.ingest_title(str(d / "pal.mov"), str(tmp_path), meta("pal"),
                              ingest_params.make_params(short_side=190))
  assert entry["frame_size"] == [190, 285]
  with records.SnippetReader(str(tmp_path), manifest=dict(titles=[entry])) as reader:
    frame = example.decode_snippet_numpy(reader.read("pal", 1))["frames"][3]
  assert np.asarray(Image.open(io.BytesIO(frame))).shape == (190, 285, 3)


def test_splits_hash_titles_and_shows():
  episodes = [meta(f"s{s}_e{e}", "episode", f"s{s}") for s in range(200) for e in range(3)]
  by_show = {}
  for ep in episodes:
    by_show.setdefault(ep["show"], set()).add(discover.split_of(ep, 0.1))
  assert all(len(splits) == 1 for splits in by_show.values())  # all or none of a show
  movies = [discover.split_of(meta(f"m{i}"), 0.1) for i in range(2000)]
  assert 0.07 < movies.count("val") / len(movies) < 0.13
  assert movies == [discover.split_of(meta(f"m{i}"), 0.1) for i in range(2000)]
  assert {discover.split_of(meta(f"m{i}"), 0.0) for i in range(100)} == {"train"}
  assert {discover.split_of(meta(f"m{i}"), 1.0) for i in range(100)} == {"val"}


def test_discovery_layouts(tmp_path):
  for rel in ["Heat.mkv", "movies/Alien.mp4", "movies/Brazil (1985)/Brazil.mkv",
              "Fargo/s01e01.mp4", "shows/Lost/Season 1/e01.mkv", "shows/Lost/Season 2/e01.mkv",
              "notes.txt", ".hidden/x.mp4"]:
    p = tmp_path / "in" / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
  got = {t["id"]: (t["kind"], t["show"]) for t in discover.discover(str(tmp_path / "in"))}
  assert got == {"Heat": ("movie", None), "Alien": ("movie", None), "Brazil": ("movie", None),
                 "Fargo_s01e01": ("episode", "Fargo"),
                 "Lost_Season_1_e01": ("episode", "Lost"), "Lost_Season_2_e01": ("episode", "Lost")}
  csv = tmp_path / "in" / "titles.csv"
  csv.write_text("title_id,kind,show_id,genres,path\n"
                 "heat_1995,movie,,crime|drama,Heat.mkv\n"
                 "Alien,episode,scifi_night,scifi;horror,\n")
  got = {t["id"]: t for t in discover.discover(str(tmp_path / "in"))}
  assert got["heat_1995"]["genres"] == ["crime", "drama"] and "Heat" not in got
  assert (got["Alien"]["kind"], got["Alien"]["show"]) == ("episode", "scifi_night")
  listing = tmp_path / "in" / "list.txt"
  listing.write_text("# two titles\nHeat.mkv\nFargo/s01e01.mp4\n")
  got = [t["id"] for t in discover.discover(str(listing), metadata=str(csv))]
  assert got == ["Fargo_s01e01", "heat_1995"]
  (tmp_path / "in" / "Alien.mp4").write_bytes(b"")
  with pytest.raises(ValueError, match="Alien"):
    discover.discover(str(tmp_path / "in"))


@pytest.fixture(scope="module")
def collection(tmp_path_factory, clocks):
  """Two good titles and every kind of bad one, in one folder."""
  d = tmp_path_factory.mktemp("collection")
  clock_dir, _ = clocks
  shutil.copy(clock_dir / "pal.mov", d / "good_a.mov")
  shutil.copy(clock_dir / "vfr.mkv", d / "good_b.mkv")
  write_clock(str(d / "no_audio.mp4"), seconds=4, fps=10, channels=0)
  write_clock(str(d / "too_short.mp4"), seconds=2.5, fps=10)
  (d / "zero_bytes.mp4").write_bytes(b"")
  (d / "not_a_video.mkv").write_text("just some text\n" * 100)
  for name, cut in (("truncated_mp4", "good_a.mov"), ("truncated_mkv", "good_b.mkv")):
    data = (d / cut).read_bytes()
    (d / f"{name}{os.path.splitext(cut)[1]}").write_bytes(data[:int(len(data) * 0.6)])
  write_clock(str(d / "faststart.mp4"), seconds=7, fps=10, faststart=True)
  data = (d / "faststart.mp4").read_bytes()
  (d / "faststart.mp4").unlink()
  (d / "truncated_faststart.mp4").write_bytes(data[:int(len(data) * 0.6)])
  return d


# Where a cut lands decides whether decoding fails or just ends early; both are caught.
BAD = {"no_audio": ("no audio track",), "too_short": ("too short",),
       "zero_bytes": ("empty file",), "not_a_video": ("cannot open",),
       "truncated_mp4": ("cannot open",), "truncated_mkv": ("truncated", "decode error"),
       "truncated_faststart": ("truncated", "decode error")}


def test_bad_input_is_reported_and_skipped(collection, tmp_path):
  out = str(tmp_path / "ds")
  report = ingest.ingest(str(collection), out, params=PARAMS, progress=False)
  reasons = {f["title_id"]: f["reason"] for f in report["failed"]}
  assert set(reasons) == set(BAD)
  for tid, why in BAD.items():
    assert any(w in reasons[tid] for w in why), (tid, reasons[tid])
  assert fileio.read_json(os.path.join(out, records.REPORT)) == report
  manifest = records.load_manifest(out)
  assert [t["id"] for t in manifest["titles"]] == ["good_a", "good_b"]
  assert manifest["params"] == ingest_params.make_params(**PARAMS)
  leftovers = sorted(os.listdir(os.path.join(out, "titles")))
  assert leftovers == sorted(f"good_{x}{ext}" for x in "ab"
                             for ext in (".json", ".tfrecord", ".index.npy"))


@pytest.mark.slow
def test_cli_exit_status_and_workers(collection, tmp_path):
  out = str(tmp_path / "ds")
  cmd = [sys.executable, "-m", "avjax.ingest", f"--input={collection}", f"--output={out}",
         "--short_side=64", "--workers=2", "--noprogress"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  first = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  assert first.returncode == 1, first.stderr[-2000:]
  assert "skipped" in first.stdout and "zero_bytes.mp4" in first.stdout
  again = subprocess.run(cmd[:-2] + ["--workers=1", "--noprogress", "--skip_errors"],
                         capture_output=True, text=True, env=env, check=False)
  assert again.returncode == 0, again.stderr[-2000:]
  report = fileio.read_json(os.path.join(out, records.REPORT))
  assert (report["already_done"], report["ingested"]) == (2, 0)
  assert len(records.load_manifest(out)["titles"]) == 2


def test_interrupted_ingest_resumes_to_the_same_manifest(clocks, tmp_path, monkeypatch):
  d, _ = clocks
  reference = str(tmp_path / "reference")
  ingest.ingest(str(d), reference, params=PARAMS, progress=False)
  out = str(tmp_path / "resumed")
  calls = []
  encode = example.encode_snippet

  def ctrl_c_in_second_title(title_id, *args):
    calls.append(title_id)
    if len(set(calls)) == 2 and calls.count(title_id) == 2:
      raise KeyboardInterrupt
    return encode(title_id, *args)

  monkeypatch.setattr(example, "encode_snippet", ctrl_c_in_second_title)
  with pytest.raises(KeyboardInterrupt):
    ingest.ingest(str(d), out, params=PARAMS, progress=False)
  monkeypatch.setattr(example, "encode_snippet", encode)
  first, second = sorted(set(calls), key=calls.index)
  assert [t["id"] for t in records.load_manifest(out)["titles"]] == [first]
  assert not os.path.exists(os.path.join(out, "titles", f"{second}.tfrecord"))
  assert not [f for f in os.listdir(os.path.join(out, "titles")) if "tmp" in f]
  # A kill between records and entry file, and a temporary left by a killed writer.
  os.remove(ingest_title.entry_path(out, first))
  open(os.path.join(out, "titles", f"{second}.tfrecord.123.tmp"), "wb").close()
  report = ingest.ingest(str(d), out, params=PARAMS, progress=False)
  assert (report["already_done"], report["ingested"]) == (0, 3)
  assert records.load_manifest(out) == records.load_manifest(reference)
  for t in records.load_manifest(out)["titles"]:
    for key in ("records", "index"):
      with open(os.path.join(out, t[key]), "rb") as a, open(os.path.join(reference, t[key]),
                                                             "rb") as b:
        assert a.read() == b.read()
  assert not [f for f in os.listdir(os.path.join(out, "titles")) if "tmp" in f]
  with pytest.raises(ValueError, match="params"):
    ingest.ingest(str(d), out, params=dict(short_side=128), progress=False)


@pytest.mark.slow
def test_synthetic_titles_ingest_with_their_labels(tmp_path):
  options = synthetic.Options(width=128, height=72, fps=10, scene_spans=(2, 3))
  synthetic.generate(str(tmp_path / "syn"), movies=1, shows=2, episodes=2, minutes=0.3, seed=3,
                     options=options)
  out = str(tmp_path / "ds")
  report = ingest.ingest(str(tmp_path / "syn"), out, params=dict(val_fraction=0.5),
                         progress=False)
  assert not report["failed"]
  labels = fileio.read_json(str(tmp_path / "syn" / synthetic.LABELS))
  manifest = records.load_manifest(out)
  assert {t["id"] for t in manifest["titles"]} == set(labels["titles"])
  for entry in manifest["titles"]:
    truth = labels["titles"][entry["id"]]
    assert (entry["kind"], entry["show"], entry["genres"]) == (
        truth["kind"], truth["show"], truth["genres"])
    assert entry["duration"] == pytest.approx(truth["duration"], abs=1e-3)
    assert entry["num_snippets"] == int(truth["duration"] // 3.2) == len(truth["events"])
    assert entry["split"] == discover.split_of(entry, 0.5)
    cuts = [s["start"] for s in truth["scenes"][1:]]
    assert len(entry["shots"]) == len(cuts)
    np.testing.assert_allclose(entry["shots"], cuts, atol=1 / options.fps + 1e-3)
  splits = {}
  for entry in manifest["titles"]:
    if entry["kind"] == "episode":
      splits.setdefault(entry["show"], set()).add(entry["split"])
  assert all(len(s) == 1 for s in splits.values())
  assert json.dumps(manifest)  # plain JSON all the way down
