"""Ingest reruns on a changed output or input: a damaged manifest is rebuilt from the entry
files, titles.csv edits reach titles already ingested (splits whole by show), and a title
whose audio covers much less than its video is reported with the seconds dropped."""

import json
import os
import shutil

import numpy as np
import pytest

from avjax.data import records
from avjax.ingest import discover
from avjax.ingest import run as ingest
from avjax.media import writer as media_writer

from helpers import bursts
from helpers import clock_frame

PARAMS = dict(short_side=64)


def test_a_damaged_manifest_is_rebuilt_from_the_entry_files(clip, tmp_path, caplog):
  root = tmp_path / "in"
  root.mkdir()
  shutil.copy(clip, root / "a.mp4")
  shutil.copy(clip, root / "b.mp4")
  out = str(tmp_path / "ds")
  ingest.ingest(str(root), out, params=PARAMS, progress=False)
  path = records.manifest_path(out)
  before = records.load_manifest(out)
  with open(path, "r+b") as f:
    f.truncate(40)  # a crash or a full disk mid-write
  report = ingest.ingest(str(root), out, params=PARAMS, progress=False)
  assert report["already_done"] == 2 and report["ingested"] == 0
  assert records.load_manifest(out) == before
  assert any("manifest.json is damaged" in r.getMessage() and "rebuilding it" in r.getMessage()
             for r in caplog.records)


def test_titles_csv_edits_reach_ingested_titles_and_keep_shows_whole(clip, tmp_path):
  root = tmp_path / "in"
  for show, episode in (("alpha", "e1"), ("beta", "e1")):
    (root / show).mkdir(parents=True)
    shutil.copy(clip, root / show / f"{episode}.mp4")
  out = str(tmp_path / "ds")
  ingest.ingest(str(root), out, params=dict(PARAMS, val_fraction=0.5), progress=False)
  entries = {t["id"]: t for t in records.load_manifest(out)["titles"]}
  assert entries["beta_e1"]["show"] == "beta"
  # beta's episode joins alpha (a re-grouped show) and gets a genre.
  (root / "titles.csv").write_text("title_id,kind,show_id,genres\n"
                                   "alpha_e1,episode,alpha,\nbeta_e1,episode,alpha,comedy\n")
  report = ingest.ingest(str(root), out, params=dict(PARAMS, val_fraction=0.5),
                         progress=False)
  assert report["ingested"] == 0  # records untouched
  (change,) = report["relabelled"]
  assert change["title_id"] == "beta_e1"
  assert change["changes"]["show"] == ["beta", "alpha"]
  assert change["changes"]["genres"] == [[], ["comedy"]]
  manifest = {t["id"]: t for t in records.load_manifest(out)["titles"]}
  assert manifest["beta_e1"]["show"] == "alpha" and manifest["beta_e1"]["genres"] == ["comedy"]
  assert manifest["beta_e1"]["split"] == manifest["alpha_e1"]["split"] == discover.split_of(
      dict(id="x", kind="episode", show="alpha"), 0.5)
  with open(os.path.join(out, records.TITLES_DIR, "beta_e1.json"), encoding="utf-8") as f:
    assert json.load(f)["show"] == "alpha"  # the entry file, the truth, agrees


def test_a_title_with_much_shorter_audio_is_reported_with_the_seconds_dropped(tmp_path):
  root = tmp_path / "in"
  root.mkdir()
  path = str(root / "short_audio.mp4")
  fps, rate = 10, 48000
  with media_writer.MediaWriter(path, width=96, height=64, fps=fps, sample_rate=rate,
                                channels=1) as w:
    w.write_frames(np.stack([clock_frame(i) for i in range(8 * fps)]))  # 8 s of video
    w.write_audio(bursts(3.5, rate)[None])  # 3.5 s of audio
  out = str(tmp_path / "ds")
  report = ingest.ingest(str(root), out, params=PARAMS, progress=False)
  assert report["ingested"] == 1 and report["snippets"] == 1
  (partial,) = report["partial"]
  assert partial["title_id"] == "short_audio"
  assert partial["video_seconds"] == pytest.approx(8.0, abs=0.2)
  assert partial["audio_seconds"] == pytest.approx(3.5, abs=0.2)
  assert partial["seconds_dropped"] == pytest.approx(4.5, abs=0.3)
  with open(os.path.join(out, records.REPORT), encoding="utf-8") as f:
    assert json.load(f)["partial"] == [partial]
