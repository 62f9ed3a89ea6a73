"""Synthetic long-form titles: determinism, label consistency, artifacts, real media files."""

import csv
import json

import av
import numpy as np
import pytest

from avjax import fileio
from avjax.ingest import synthetic
from avjax.ingest import synthetic_plan
from avjax.ingest import synthetic_render

TINY = synthetic.Options(width=96, height=64, fps=10)


def plan(seed=0, options=TINY, **kw):
  args = dict(movies=2, shows=2, episodes=2, minutes=0.4, seed=seed)
  args.update(kw)
  return synthetic.plan_collection(options=options, **args)


def test_event_classes_tie_sight_to_sound():
  classes = [synthetic.event_class(c) for c in range(synthetic_plan.MAX_CLASSES)]
  keys = {(c["shape"], c["motion"], c["pitch_hz"]) for c in classes}
  assert len(keys) == synthetic_plan.MAX_CLASSES
  for c in classes:  # shape always comes with its timbre, motion with its rhythm
    assert synthetic_plan.TIMBRES.index(c["timbre"]) == synthetic_plan.SHAPES.index(c["shape"])
    assert synthetic_plan.ONSET_INTERVALS[synthetic_plan.MOTIONS.index(c["motion"])] == c["onset_interval"]
  with pytest.raises(ValueError):
    synthetic.event_class(synthetic_plan.MAX_CLASSES)
  with pytest.raises(ValueError, match="classes"):
    plan(options=synthetic.Options(classes=synthetic_plan.MAX_CLASSES + 1))


def test_plans_are_deterministic_per_seed():
  a, b = plan(seed=5), plan(seed=5)
  assert json.dumps(a) == json.dumps(b)
  assert json.dumps(a) != json.dumps(plan(seed=6))
  for x, y in zip(synthetic_render.render_chunks(a[0], TINY), synthetic_render.render_chunks(b[0], TINY)):
    np.testing.assert_array_equal(x[0], y[0])
    np.testing.assert_array_equal(x[1], y[1])


def test_labels_are_consistent():
  options = synthetic.Options(width=96, height=64, fps=10, classes=7)
  plans = plan(options=options, minutes=0.6)
  labels = synthetic.labels(plans, seed=0, options=options)
  assert json.loads(json.dumps(labels)) == labels
  L = options.snippet_seconds
  for tid, t in labels["titles"].items():
    spans = int(t["duration"] // L)
    assert [e["span"] for e in t["events"]] == list(range(spans))  # one event per span
    for e in t["events"]:
      assert e["title"] == tid and 0 <= e["class"] < 7
      assert e["span"] * L <= e["start"] < e["end"] <= (e["span"] + 1) * L
      assert e["onsets"] and all(e["start"] <= o <= e["end"] for o in e["onsets"])
    scenes = t["scenes"]
    assert scenes[0]["start"] == 0 and scenes[-1]["end"] == pytest.approx(t["duration"])
    for s, nxt in zip(scenes, scenes[1:]):
      assert s["end"] == nxt["start"] and s["location"] != nxt["location"]
      assert s["end"] / L == pytest.approx(round(s["end"] / L))  # cuts fall between snippets
  by_id = {p["id"]: p for p in plans}
  # Episodes of a show share their artifacts; other titles do not.
  assert by_id["show00_e00"]["style"] == by_id["show00_e01"]["style"]
  assert by_id["show00_e00"]["genres"] == by_id["show00_e01"]["genres"]
  assert by_id["show00_e00"]["events"] != by_id["show00_e01"]["events"]
  palettes = [json.dumps(by_id[i]["style"]["palette"]) for i in ("movie000", "movie001",
                                                                   "show00_e00", "show01_e00")]
  assert len(set(palettes)) == 4


def test_artifact_strength_zero_leaves_nothing_title_exclusive():
  options = synthetic.Options(width=96, height=64, fps=10, artifact_strength=0.0)
  plans = plan(options=options)
  a = plans[0]
  b = dict(a, style=dict(plans[2]["style"], sample_rate=a["style"]["sample_rate"],
                         channels=a["style"]["channels"]))
  for x, y in zip(synthetic_render.render_chunks(a, options), synthetic_render.render_chunks(b, options)):
    np.testing.assert_array_equal(x[0], y[0])
    np.testing.assert_allclose(x[1], y[1], atol=1e-6)
  # At full strength the style shows in picture and sound.
  x = next(synthetic_render.render_chunks(a, TINY))
  y = next(synthetic_render.render_chunks(b, TINY))
  assert np.abs(x[0].astype(int) - y[0]).mean() > 5 and np.abs(x[1] - y[1]).mean() > 1e-3


def test_events_flash_when_they_sound():
  options = synthetic.Options(width=96, height=64, fps=50, sample_rate=48000)
  p = plan(options=options, movies=1, shows=0, minutes=0.1)[0]
  event = p["events"][0]
  t = np.arange(0, 3.2, 1 / 50)
  *_, bright = synthetic_render._event_motion(event, t, 64, 96)  # pylint: disable=protected-access
  flashes = t[1:][np.diff(bright) > 0.1]
  np.testing.assert_allclose(flashes, np.ceil(np.asarray(event["onsets"]) * 50) / 50, atol=1e-6)


@pytest.mark.slow
def test_generate_writes_media_files_titles_and_labels(tmp_path):
  out = tmp_path / "syn"
  plans = synthetic.generate(str(out), movies=1, shows=1, episodes=2, minutes=0.2, seed=1,
                             options=TINY)
  with open(out / synthetic.TITLES_CSV, newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["title_id"] for r in rows] == ["movie000", "show00_e00", "show00_e01"]
  assert [(r["kind"], r["show_id"], r["path"]) for r in rows] == [
      ("movie", "", "movies/movie000.mp4"), ("episode", "show00", "shows/show00/e00.mp4"),
      ("episode", "show00", "shows/show00/e01.mp4")]
  labels = fileio.read_json(str(out / synthetic.LABELS))
  assert labels == json.loads(json.dumps(synthetic.labels(plans, seed=1, options=TINY)))
  for p in plans:
    with av.open(str(out / p["path"])) as c:
      v, a = c.streams.video[0], c.streams.audio[0]
      assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
      assert (v.width, v.height) == (96, 64)
      assert (a.rate, a.channels) == (p["style"]["sample_rate"], p["style"]["channels"])
      frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
    assert len(frames) == p["num_frames"]
    rendered = np.concatenate([f for f, _ in synthetic_render.render_chunks(p, TINY)])
    assert np.abs(np.stack(frames).astype(int) - rendered).mean() < 6  # lossy, but the same
  # Same seed, same content: the files decode to the same frames.
  again = synthetic.generate(str(tmp_path / "again"), movies=1, shows=1, episodes=2,
                             minutes=0.2, seed=1, options=TINY)
  assert json.dumps(again) == json.dumps(plans)
  # The rendered pictures and sound are bit-identical; the H.264 encoder may round a few
  # pixel levels differently from one encode to the next, so the files decode to nearly
  # the same frames.
  for (v1, a1), (v2, a2) in zip(synthetic_render.render_chunks(plans[0], TINY),
                                synthetic_render.render_chunks(again[0], TINY)):
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(a1, a2)
  with av.open(str(out / plans[0]["path"])) as c1, \
      av.open(str(tmp_path / "again" / plans[0]["path"])) as c2:
    f1 = np.stack([f.to_ndarray(format="rgb24") for f in c1.decode(video=0)]).astype(int)
    f2 = np.stack([f.to_ndarray(format="rgb24") for f in c2.decode(video=0)]).astype(int)
  assert f1.shape == f2.shape and np.abs(f1 - f2).mean() < 1.0
