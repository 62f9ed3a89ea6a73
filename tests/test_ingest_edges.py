"""Ingest's edges: any file name, rotated video, the output lock, FIFOs, links, temporaries,
and the per-title time limit."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from avjax import dirlock
from avjax.data import example
from avjax.data import records
from avjax.ingest import discover
from avjax.ingest import lock as lock_lib
from avjax.ingest import params as ingest_params
from avjax.ingest import run as ingest
from avjax.ingest import title as ingest_title
from avjax.media import decode
from avjax.media import writer as media_writer


PARAMS = dict(short_side=64)


def _touch(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  open(path, "wb").close()


def test_any_file_name_makes_a_title_id(tmp_path):
  root = str(tmp_path / "in")
  for rel in ["Сталкер.mp4", "!!!.mp4", "Amélie (2001).mp4", "shows/Друзья/s01e01.mp4",
              "shows/Друзья/s01e02.mp4", "shows/Офис/s01e01.mp4", "Fargo/s01e01.mp4"]:
    _touch(os.path.join(root, rel))
  got = {t["id"]: (t["kind"], t["show"]) for t in discover.discover(root)}
  hashed = records.unicode_title_id("!!!")
  assert hashed.startswith("title_") and len(hashed) == 16
  assert got == {"Сталкер": ("movie", None), hashed: ("movie", None),
                 "Am_lie_2001": ("movie", None),  # an id valid before: unchanged
                 "Друзья_s01e01": ("episode", "Друзья"),
                 "Друзья_s01e02": ("episode", "Друзья"),
                 "Офис_s01e01": ("episode", "Офис"),
                 "Fargo_s01e01": ("episode", "Fargo")}
  # A titles.csv row naming the file wins; the path is not even looked at.
  with open(os.path.join(root, "titles.csv"), "w", encoding="utf-8") as f:
    f.write("title_id,kind,show_id,genres,path\nstalker_1979,movie,,drama,Сталкер.mp4\n"
            "Офис_pilot,episode,office,,shows/Офис/s01e01.mp4\n")
  got = {t["id"]: t["show"] for t in discover.discover(root)}
  assert "stalker_1979" in got and "Сталкер" not in got
  assert got["Офис_pilot"] == "office"


def test_a_non_latin_title_is_ingested_and_read(clip, tmp_path):
  root = tmp_path / "in"
  (root / "shows" / "Друзья").mkdir(parents=True)
  shutil.copy(clip, root / "Сталкер.mp4")
  shutil.copy(clip, root / "shows" / "Друзья" / "Серия 1.mp4")
  out = str(tmp_path / "ds")
  report = ingest.ingest(str(root), out, params=PARAMS, progress=False)
  assert not report["failed"] and report["ingested"] == 2
  manifest = records.load_manifest(out)
  assert [t["id"] for t in manifest["titles"]] == ["Друзья_Серия_1", "Сталкер"]
  with records.SnippetReader(out) as reader:
    snippet = example.decode_snippet_numpy(reader.read("Сталкер", 0))
  assert snippet["title_id"] == "Сталкер"


def _marked_frames(n):
  """Landscape 96x64 frames, white in the 20 leftmost columns."""
  frames = np.zeros((n, 64, 96, 3), np.uint8)
  frames[:, :, :20] = 255
  return frames


def _rotated_clip(path, rotation=0, rotate_tag=None):
  with media_writer.MediaWriter(path, width=96, height=64, fps=10, rotation=rotation) as w:
    if rotate_tag is not None:
      w._video.metadata["rotate"] = rotate_tag  # pylint: disable=protected-access
    w.write_frames(_marked_frames(35))
    w.write_audio(np.zeros((2, 48000 * 35 // 10), np.float32))


@pytest.mark.parametrize("how,white_at", [
    (dict(rotation=90), "bottom"),       # display matrix: turn 90 degrees counter-clockwise
    (dict(rotate_tag="90"), "top"),      # older files: `rotate` tag, 90 degrees clockwise
])
def test_rotated_video_is_stored_upright(how, white_at, tmp_path):
  path = str(tmp_path / ("portrait.mkv" if "rotate_tag" in how else "portrait.mp4"))
  _rotated_clip(path, **how)
  entry = ingest_title.ingest_title(path, str(tmp_path / "ds"), dict(
      id="portrait", kind="movie", show=None, genres=[]), ingest_params.make_params(**PARAMS))
  assert entry["frame_size"] == [96, 64]  # [height, width]: portrait, as displayed
  with records.SnippetReader(str(tmp_path / "ds"), manifest=dict(titles=[entry])) as reader:
    frame = example.decode_snippet_numpy(reader.read("portrait", 0))["frames"][5]
  img = np.asarray(Image.open(io.BytesIO(frame))).mean(axis=(1, 2))  # per row
  assert img.shape == (96,)
  top, bottom = img[:15].mean(), img[-15:].mean()
  assert (top > 200 and bottom < 50) if white_at == "top" else (bottom > 200 and top < 50)
  # The downstream decoder turns them the same way.
  frames, _ = decode.decode_frames(path, fps=5, short_side=64)
  assert np.asarray(Image.open(io.BytesIO(frames[0]))).shape == (96, 64, 3)


def test_a_second_ingest_is_refused_and_a_stale_lock_taken_over(tmp_path):
  root, out = tmp_path / "in", str(tmp_path / "ds")
  root.mkdir()
  with lock_lib.IngestLock(out):
    with pytest.raises(lock_lib.LockedError,
                       match=f"PID {os.getpid()} on host {socket.gethostname()}"):
      ingest.ingest(str(root), out, progress=False)
  assert not os.path.exists(os.path.join(out, lock_lib.LOCK_FILE))  # released
  # A lock left by a process that is gone is taken over.
  gone = subprocess.Popen([sys.executable, "-c", "pass"])
  gone.wait()
  with open(os.path.join(out, lock_lib.LOCK_FILE), "w", encoding="utf-8") as f:
    json.dump(dict(pid=gone.pid, host=socket.gethostname(), started="earlier"), f)
  report = ingest.ingest(str(root), out, progress=False)
  assert report["titles"] == 0
  assert not os.path.exists(os.path.join(out, lock_lib.LOCK_FILE))


def test_a_lock_of_another_host_is_stale_once_not_refreshed(tmp_path):
  path = str(tmp_path / lock_lib.LOCK_FILE)
  holder = dict(pid=1, host="another-host", started="earlier")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(holder, f)
  assert dirlock.stale_reason(holder, path) is None  # just refreshed
  old = time.time() - dirlock.STALE_SECONDS - 5
  os.utime(path, (old, old))
  assert "has not refreshed it" in dirlock.stale_reason(holder, path)


def test_a_fifo_is_skipped_with_a_reason(clip, tmp_path):
  root = tmp_path / "in"
  root.mkdir()
  shutil.copy(clip, root / "good.mp4")
  os.mkfifo(root / "pipe.mp4")  # opening it would block forever
  report = ingest.ingest(str(root), str(tmp_path / "ds"), params=PARAMS, progress=False)
  assert report["ingested"] == 1
  assert [(f["title_id"], f["reason"]) for f in report["failed"]] == [
      ("pipe", "not a regular file (a FIFO); skipped without opening it")]


def test_linked_folders_are_followed_and_a_loop_is_stopped(tmp_path):
  _touch(str(tmp_path / "elsewhere" / "Lost" / "e01.mp4"))
  root = tmp_path / "in"
  _touch(str(root / "movies" / "Heat.mp4"))
  (root / "shows").mkdir()
  os.symlink(tmp_path / "elsewhere" / "Lost", root / "shows" / "Lost")
  os.symlink(root, root / "movies" / "again")  # a loop back to the top
  got = sorted(t["id"] for t in discover.discover(str(root)))
  assert got == ["Heat", "Lost_e01"]


def test_stale_temporaries_are_cleaned_by_the_driver(tmp_path):
  out = tmp_path / "ds"
  (out / "titles").mkdir(parents=True)
  (tmp_path / "in").mkdir()
  gone = subprocess.Popen([sys.executable, "-c", "pass"])
  gone.wait()
  live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    stale = [out / "manifest.json.k2j3x9.tmp", out / "ingest_report.json.a1b2.tmp",
             out / "titles" / f"m.tfrecord.{gone.pid}.tmp",
             out / "titles" / f"m.index.npy.{gone.pid}.tmp.npy", out / "titles" / "m.json.q.tmp"]
    keep = [out / "titles" / f"n.tfrecord.{live.pid}.tmp", out / "notes.txt"]
    for p in stale + keep:
      p.write_bytes(b"x")
    ingest.ingest(str(tmp_path / "in"), str(out), progress=False)
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in keep)  # a live process's file, and no temporary
  finally:
    live.kill()
    live.wait()


def test_a_title_over_its_time_limit_is_reported_and_skipped(clip, tmp_path, monkeypatch):
  root = tmp_path / "in"
  root.mkdir()
  shutil.copy(clip, root / "slow.mp4")
  encode = example.encode_snippet

  def slow(*args):
    time.sleep(2.0)
    return encode(*args)
  monkeypatch.setattr(example, "encode_snippet", slow)
  out = str(tmp_path / "ds")
  report = ingest.ingest(str(root), out, params=PARAMS, progress=False, title_timeout=0.5)
  assert [(f["title_id"], f["reason"]) for f in report["failed"]] == [
      ("slow", "over the time limit of 0.5 s (--title_timeout)")]
  assert sorted(os.listdir(os.path.join(out, "titles"))) == []  # nothing partial left
