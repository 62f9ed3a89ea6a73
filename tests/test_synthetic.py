"""Synthetic long-form titles: determinism, label consistency, artifacts, real media files."""

import csv
import itertools
import json

import av
import numpy as np
import pytest

from avjax import fileio
from avjax.evals import inputs
from avjax.ingest import discover
from avjax.synthetic import generator as synthetic
from avjax.synthetic import plan as synthetic_plan
from avjax.synthetic import presets as synthetic_presets
from avjax.synthetic import render as synthetic_render
from helpers import log_mel_numpy

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


# ---------------------------------------------------------------------------
# Presets (avjax/synthetic/presets.py).


def _chunks(plan, options, n):
  return list(itertools.islice(synthetic_render.render_chunks(plan, options), n))


def _plans(name, seed=0, **overrides):
  collection = synthetic_presets.preset(name, **overrides)
  del collection["ingest"]
  return synthetic_plan.plan_collection(seed=seed, **collection), collection["options"]


def test_presets_resolve_and_override():
  study = synthetic_presets.preset("study")
  assert isinstance(study["options"], synthetic.Options)
  small = synthetic_presets.preset("study", movies=3, shows=0, width=64)
  assert (small["movies"], small["shows"], small["options"].width) == (3, 0, 64)
  assert small["options"].event_scale == study["options"].event_scale
  assert small["minutes"] == study["minutes"]
  with pytest.raises(ValueError, match="unknown synthetic preset"):
    synthetic_presets.preset("huge")
  with pytest.raises(ValueError, match="unknown field 'colour'"):
    synthetic_presets.preset("study", colour=1)
  with pytest.raises(ValueError, match="event_color"):
    synthetic.Options(event_color="pink")


def test_study_preset_sizes():
  """Enough titles for B = 64 << N after the held-out split, each long enough for k = 16."""
  plans, options = _plans("study")
  snippets = [int(p["duration"] // options.snippet_seconds) for p in plans]
  assert min(snippets) >= 16
  val_fraction = synthetic_presets.preset("study")["ingest"]["val_fraction"]
  meta = [dict(id=p["id"], kind=p["kind"], show=p["show"]) for p in plans]
  train = [m for m in meta if discover.split_of(m, val_fraction) == "train"]
  assert len(train) >= 200
  assert sum(p["kind"] == "episode" for p in plans) > 0  # shows too, held out by show


def test_study_preset_is_deterministic():
  a, options = _plans("study", seed=4, movies=2, shows=1, episodes=2)
  b, _ = _plans("study", seed=4, movies=2, shows=1, episodes=2)
  c, _ = _plans("study", seed=5, movies=2, shows=1, episodes=2)
  assert json.dumps(a) == json.dumps(b) != json.dumps(c)
  for x, y in zip(_chunks(a[2], options, 3), _chunks(b[2], options, 3)):
    np.testing.assert_array_equal(x[0], y[0])
    np.testing.assert_array_equal(x[1], y[1])


def test_study_events_are_independent_of_title_and_location():
  """Chi-square of independence of the event class against the title and against the
  (title, location): the statistic over its degrees of freedom is ~1 for independent
  draws (std ~ sqrt(2 / dof) ~ 0.03 here)."""
  plans, options = _plans("study")

  def chi2_per_dof(key_of):
    table = {}
    for p in plans:
      for e in p["events"]:
        scene = next(s for s in p["scenes"] if s["start"] <= e["start"] < s["end"])
        key = key_of(p, scene["location"])
        table.setdefault(key, np.zeros(options.classes))[e["cls"]] += 1
    counts = np.stack(list(table.values()))
    expected = counts.sum(1, keepdims=True) * counts.sum(0, keepdims=True) / counts.sum()
    dof = (counts.shape[0] - 1) * (options.classes - 1)
    return ((counts - expected) ** 2 / expected).sum() / dof

  assert 0.85 < chi2_per_dof(lambda p, loc: p["id"]) < 1.15
  assert 0.8 < chi2_per_dof(lambda p, loc: (p["id"], loc)) < 1.2


def _event_frame(plan, options, span):
  """The middle frame of span `span` and its event's object mask (against no event)."""
  with_event = _chunks(plan, options, span + 1)[span][0]
  bare = dict(plan, events=[e for e in plan["events"] if e["span"] != span])
  without = _chunks(bare, options, span + 1)[span][0]
  i = len(with_event) // 2
  return np.abs(with_event[i].astype(int) - without[i]).sum(-1) > 30


def test_study_events_fill_the_crop_and_sound_above_the_background():
  plans, options = _plans("study", movies=2, shows=0)
  plan = plans[0]
  crop = options.height  # the study trains on height x height centre crops
  x0 = (options.width - crop) // 2
  areas = [_event_frame(plan, options, span)[:, x0:x0 + crop].mean() for span in range(4)]
  assert min(areas) > 0.08 and np.mean(areas) > 0.15  # the object is a large part of the crop
  # The event's sound stands well above everything else in its snippet (> 8 dB).
  rate = plan["style"]["sample_rate"]
  L = options.snippet_seconds
  for span in range(4):
    event = plan["events"][span]
    scene = next(s for s in plan["scenes"] if s["start"] <= span * L < s["end"])
    s0, s1 = int(round(span * L * rate)), int(round((span + 1) * L * rate))
    render = synthetic_render._render_audio  # pylint: disable=protected-access
    mix = render(plan, scene, [event], s0, s1, options)
    rest = render(plan, scene, [], s0, s1, options)
    t = np.arange(s0, s1) / rate
    inside = (t > event["start"] + 0.1) & (t < event["end"] - 0.1)
    event_power = ((mix - rest)[:, inside] ** 2).mean()
    assert 10 * np.log10(event_power / (rest[:, inside] ** 2).mean()) > 8


def _input_features(plans, options, snippets):
  """inputs.input_features of each title's first snippets as the study sees them: 4
  frames, centre crop, log-mel."""
  rows, titles, index = [], [], []
  crop = options.height
  x0 = (options.width - crop) // 2
  for n, plan in enumerate(plans):
    for m, (frames, sound) in enumerate(_chunks(plan, options, snippets)):
      if len(frames) < round(options.snippet_seconds * options.fps):
        continue  # the title's tail, shorter than a snippet
      video = frames[::len(frames) // 4][:4, :, x0:x0 + crop].astype(np.float32)[None] / 255
      rate = plan["style"]["sample_rate"]
      mel = log_mel_numpy(sound.mean(0), sample_rate=rate, n_fft=1024, hop=512,
                          mel_upper_hz=rate / 2)
      rows.append(inputs.input_features(video, mel[None].astype(np.float32)))
      titles.append(n)
      index.append(m)
  feats = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
  return feats, np.asarray(titles), np.asarray(index)


@pytest.mark.parametrize("name", ["study", "mini"])
def test_title_cues_in_both_modalities(name):
  """The study preset's titles are told apart from either modality's simple statistics; the
  mini preset has no title-exclusive cues, so its sound does not tell titles apart."""
  plans, options = _plans(name, seed=2, movies=6, shows=0)
  feats, titles, index = _input_features(plans, options, 6)
  video, _ = inputs.title_identification(feats["video_pixels"], titles, index)
  sound, _ = inputs.title_identification(feats["audio_mel"], titles, index)
  if name == "study":
    assert video > 0.8 and sound > 0.8
  else:
    assert sound < 0.5


def test_generate_in_worker_processes_writes_the_same_collection(tmp_path):
  options = synthetic_presets.preset("mini")["options"]
  args = dict(movies=3, shows=0, episodes=0, minutes=0.1, seed=3, options=options,
              progress=False)
  one = synthetic.generate(str(tmp_path / "one"), workers=1, **args)
  two = synthetic.generate(str(tmp_path / "two"), workers=2, **args)
  assert json.dumps(one) == json.dumps(two)
  for name in (synthetic.LABELS, synthetic.TITLES_CSV):
    assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
  for plan in one:  # the same pictures and sound, up to the encoders' rounding
    a, b = (av.open(str(tmp_path / d / plan["path"])) for d in ("one", "two"))
    with a, b:
      fa = np.stack([f.to_ndarray(format="rgb24") for f in a.decode(video=0)]).astype(int)
      fb = np.stack([f.to_ndarray(format="rgb24") for f in b.decode(video=0)]).astype(int)
    assert fa.shape == fb.shape and np.abs(fa - fb).mean() < 1.0
