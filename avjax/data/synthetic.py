r"""Synthetic long-form titles: movies and TV episodes with known events, scenes and artifacts.

The generated titles carry what the paper (Section 3) is about, with ground truth:
  * content-exclusive artifacts that persist through a title, and through all
    episodes of a show: a color palette and grade, letterbox bars, a recurring
    "main character" sprite with its own voice, theme music, a drone and mains hum;
  * one semantic audio-visual event per snippet-sized span, from C classes, where
    shape goes with timbre, motion with onset rhythm, size with pitch, and the
    object flashes, jumps or turns exactly when its sound starts;
  * scenes: runs of spans with one background and layout (a "location", which may
    recur later in the title), separated by hard cuts.
`artifact_strength` scales every title-exclusive cue (0 removes them all), a knob for
studying how easy cross-title negatives are.

Everything is a function of the seed and the options: plans, labels, and the rendered
pictures and sound bit for bit. The encoded files decode to nearly the same frames (the
H.264 encoder may round a few pixel levels differently from one encode to the next).

Output of `generate` (python -m avjax.synthetic):
  DIR/movies/<title>.mp4           H.264 + AAC
  DIR/shows/<show>/<episode>.mp4   title id <show>_<episode>
  DIR/titles.csv                   title_id, kind, show_id, genres ('|'-separated), path
  DIR/labels.json                  per title: events (title, start, end, class) and scenes
"""

import colorsys
import csv
import dataclasses
import fractions
import os

from absl import logging
import av
import numpy as np

from avjax import fileio

LABELS = "labels.json"
TITLES_CSV = "titles.csv"

# Class c is (shape, timbre) = pair c % 5, (motion, onset interval) = c // 5 % 3 and
# pitch octave c // 15: what is seen and what is heard always change together.
SHAPES = ("disc", "square", "triangle", "ring", "cross")
TIMBRES = ("sine", "square", "saw", "bell", "noise")
MOTIONS = ("sweep", "hop", "orbit")
ONSET_INTERVALS = (0.5, 1 / 3, 0.25)
MAX_CLASSES = len(SHAPES) * len(MOTIONS) * 2
GENRES = ("action", "animation", "comedy", "crime", "documentary", "drama", "family",
          "horror", "romance", "scifi", "thriller", "western")

_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_FADE = 0.05  # s; events fade in and out so that no event is a hard cut
_DECAY = 0.15  # s; envelope decay after each onset, shared by sound and picture


@dataclasses.dataclass(frozen=True)
class Options:
  """How titles look and sound; the defaults make small files for demos and tests."""
  width: int = 320
  height: int = 180
  fps: float = 12.0
  sample_rate: int = 0  # 0: each title picks 48 kHz or 44.1 kHz (ingest resamples the latter)
  classes: int = 10
  snippet_seconds: float = 3.2
  artifact_strength: float = 1.0
  scene_spans: tuple = (2, 8)  # scene length range, in snippet-sized spans
  grain: float = 0.0  # film grain std in 8-bit levels; makes H.264 work like on real footage
  crf: int = 23
  preset: str = "veryfast"


def event_class(c):
  """The definition of event class c: the same for every seed, so sets share semantics."""
  if not 0 <= c < MAX_CLASSES:
    raise ValueError(f"event class {c} out of range [0, {MAX_CLASSES})")
  rhythm = c // len(SHAPES) % len(MOTIONS)
  return dict(id=c, shape=SHAPES[c % len(SHAPES)], timbre=TIMBRES[c % len(SHAPES)],
              motion=MOTIONS[rhythm], onset_interval=ONSET_INTERVALS[rhythm],
              pitch_hz=round(220.0 * 2 ** ((c * 7 % 12) / 12 + c // 15), 3))


# ---------------------------------------------------------------------------
# Planning: everything random is drawn here, as plain data; rendering is a pure function of it.


def _rng(*key):
  return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _hsv(h, s, v):
  return list(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


def _style(rng, options):
  """Artifacts shared by a whole title or show: palette, grade, sprite, voice, music, hum."""
  hue = rng.random()
  palette = [_hsv(hue + rng.normal(0, 0.06), rng.uniform(0.35, 0.9), rng.uniform(0.25, 0.95))
             for _ in range(5)]
  half = rng.random((5, 3)) < 0.5
  sprite = np.concatenate([half, half[:, 1::-1]], axis=1)
  sprite[1, 1] = sprite[1, 3] = True  # eyes: never an empty sprite
  scale = np.array([1.0, 9 / 8, 5 / 4, 3 / 2, 5 / 3, 2.0]) if rng.random() < 0.5 else \
      np.array([1.0, 6 / 5, 4 / 3, 3 / 2, 9 / 5, 2.0])
  rate = options.sample_rate or int(rng.choice([48000, 44100]))
  return dict(
      palette=palette,
      accent=_hsv(hue + 0.5, 0.8, 1.0),
      gain=list(1 + 0.15 * rng.normal(size=3)),
      lift=list(0.05 * rng.normal(size=3)),
      letterbox=float(0.12 if rng.random() < 0.3 else 0.0),
      sprite=sprite.astype(int).tolist(),
      sprite_color=_hsv(hue + rng.uniform(0.3, 0.7), 0.7, 0.95),
      voice_hz=float(rng.uniform(100, 260)),
      formants=[float(rng.uniform(300, 800)), float(rng.uniform(900, 2200))],
      music_hz=list(float(f) for f in rng.uniform(110, 220) * scale),
      motif=rng.integers(0, 6, size=int(rng.integers(4, 9))).tolist(),
      note_seconds=float(rng.uniform(0.25, 0.6)),
      hum_hz=float(rng.choice([50.0, 60.0])),
      sample_rate=rate,
      channels=int(rng.choice([1, 2])),
  )


def _scenes(rng, num_spans, duration, options):
  """Scenes as runs of spans; some return to an earlier location (a recurring set)."""
  lo, hi = options.scene_spans
  scenes, locations, span = [], [], 0
  while span * options.snippet_seconds < duration:
    n = int(rng.integers(lo, hi + 1))
    # Consecutive sets differ in lighting (and layout), so that every cut is a visible one.
    previous = locations[scenes[-1]["location"]]["light"] if scenes else -1.0
    others = [loc for loc in locations if abs(loc["light"] - previous) >= 0.25]
    if others and rng.random() < 0.3:
      location = others[int(rng.integers(len(others)))]
    else:
      light = float(rng.uniform(0.4, 1.3))
      while abs(light - previous) < 0.25:
        light = float(rng.uniform(0.4, 1.3))
      location = dict(id=len(locations), top=int(rng.integers(5)), bottom=int(rng.integers(5)),
                      light=light,
                      neutral=[list(rng.random(3)) for _ in range(5)],
                      boxes=[[float(x) for x in rng.uniform(0, 1, 4)] + [int(rng.integers(5))]
                             for _ in range(3)],
                      character_x=float(rng.choice([0.08, 0.72])))
      locations.append(location)
    end = min((span + n) * options.snippet_seconds, duration)
    if span + n >= num_spans:  # the last scene takes the tail shorter than a span too
      end = duration
    scenes.append(dict(start=round(span * options.snippet_seconds, 6), end=round(end, 6),
                       location=location["id"], character=bool(rng.random() < 0.6),
                       room_level=float(rng.uniform(0.005, 0.02)),
                       room_cutoff=float(rng.uniform(300, 3000))))
    span += n
    if end >= duration:
      break
  return scenes, locations


def _events(rng, num_spans, options):
  """One event per full span: class, span inside the snippet, place, size, onsets."""
  L = options.snippet_seconds
  events = []
  for k in range(num_spans):
    c = int(rng.integers(options.classes))
    cls = event_class(c)
    start = k * L + rng.uniform(0.1, 0.4)
    end = (k + 1) * L - rng.uniform(0.1, 0.4)
    first = start + rng.uniform(0.05, cls["onset_interval"])
    onsets = np.arange(first, end - 0.1, cls["onset_interval"])
    size = float(rng.uniform(0.7, 1.3))
    events.append(dict(
        span=k, start=round(float(start), 6), end=round(float(end), 6), cls=c,
        x=float(rng.uniform(0.25, 0.75)), y=float(rng.uniform(0.3, 0.7)), size=size,
        direction=float(rng.choice([-1.0, 1.0])), onsets=[round(float(o), 6) for o in onsets],
        pitch_hz=cls["pitch_hz"] / size, seed=int(rng.integers(2**31))))
  return events


def _syllables(rng, scene):
  """Voice syllables (start, length) over a scene, in phrases with pauses."""
  out, t = [], scene["start"] + rng.uniform(0.1, 0.6)
  while t < scene["end"] - 0.3:
    for _ in range(int(rng.integers(2, 7))):
      length = float(rng.uniform(0.12, 0.25))
      if t + length > scene["end"]:
        break
      out.append((round(t, 6), round(length, 6)))
      t += length + rng.uniform(0.03, 0.12)
    t += rng.uniform(0.4, 1.5)
  return out


def plan_collection(*, movies, shows, episodes, minutes, seed, options=Options()):
  """Plans a collection: a list of title dicts (plain data, JSON-able)."""
  if not 1 <= options.classes <= MAX_CLASSES:
    raise ValueError(f"classes must be in [1, {MAX_CLASSES}], got {options.classes}")
  plans = []
  units = [("movie", i, None) for i in range(movies)]
  units += [("episode", s, e) for s in range(shows) for e in range(episodes)]
  for kind, i, e in units:
    style_rng = _rng(seed, 0 if kind == "movie" else 1, i)  # shared by a show's episodes
    style = _style(style_rng, options)
    genres = sorted(style_rng.choice(GENRES, size=int(style_rng.integers(1, 4)), replace=False))
    if kind == "movie":
      tid, show, path = f"movie{i:03d}", None, f"movies/movie{i:03d}.mp4"
    else:
      show = f"show{i:02d}"
      tid, path = f"{show}_e{e:02d}", f"shows/{show}/e{e:02d}.mp4"
    rng = _rng(seed, 2, 0 if kind == "movie" else 1, i, 0 if e is None else e + 1)
    num_frames = max(1, int(round(minutes * 60 * rng.uniform(0.9, 1.1) * options.fps)))
    duration = num_frames / options.fps
    num_spans = int((duration + 1e-9) // options.snippet_seconds)
    scenes, locations = _scenes(rng, num_spans, duration, options)
    for scene in scenes:
      scene["syllables"] = _syllables(rng, scene) if scene["character"] else []
    plans.append(dict(id=tid, kind=kind, show=show, genres=[str(g) for g in genres],
                      path=path, seed=int(rng.integers(2**31)), duration=duration,
                      num_frames=num_frames, style=style,
                      scenes=scenes, locations=locations, events=_events(rng, num_spans, options)))
  return plans


# ---------------------------------------------------------------------------
# Rendering.


def _grade(rgb, style, strength):
  gain = 1 + strength * (np.asarray(style["gain"], np.float32) - 1)
  lift = strength * np.asarray(style["lift"], np.float32)
  return np.clip(np.asarray(rgb, np.float32) * gain + lift, 0, 1)


def _location_colors(location, style, strength):
  """Palette colors of a location, pulled towards per-location neutral colors as strength drops."""
  s = float(np.clip(strength, 0, 1))
  colors = s * np.asarray(style["palette"], np.float32) + (1 - s) * np.asarray(
      location["neutral"], np.float32)
  return np.clip(colors * location["light"], 0, 1)


def _background(location, style, options, height, width):
  """A location's static image (graded, uint8): a gradient and three set pieces."""
  colors = _location_colors(location, style, options.artifact_strength)
  ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
  img = (1 - ramp) * colors[location["top"]] + ramp * colors[location["bottom"]]
  img = np.broadcast_to(img, (height, width, 3)).copy()
  for x, y, w, h, ci in location["boxes"]:
    x0, y0 = int(x * width * 0.8), int(y * height * 0.8)
    x1, y1 = x0 + int((0.1 + 0.3 * w) * width), y0 + int((0.1 + 0.3 * h) * height)
    img[y0:y1, x0:x1] = 0.8 * colors[ci] + 0.2 * colors[(ci + 2) % 5]
  return (_grade(img, style, options.artifact_strength) * 255 + 0.5).astype(np.uint8)


def _decay_envelope(t, onsets):
  """exp(-dt/decay) since the latest onset at or before t; 0 before the first onset."""
  onsets = np.asarray(onsets, np.float64)
  if onsets.size == 0:
    return np.zeros_like(t, dtype=np.float32)
  i = np.searchsorted(onsets, t, side="right") - 1
  dt = t - onsets[np.maximum(i, 0)]
  return np.where(i >= 0, np.exp(-dt / _DECAY), 0.0).astype(np.float32)


def _window(t, start, end):
  return np.clip(np.minimum(t - start, end - t) / _FADE, 0, 1).astype(np.float32)


def _syllable_envelope(t, syllables):
  if not syllables:
    return np.zeros_like(t, dtype=np.float32)
  starts = np.asarray([s for s, _ in syllables])
  lengths = np.asarray([l for _, l in syllables])
  i = np.maximum(np.searchsorted(starts, t, side="right") - 1, 0)
  phase = (t - starts[i]) / lengths[i]
  return np.where((phase >= 0) & (phase < 1), np.sin(np.pi * np.clip(phase, 0, 1)) ** 2,
                  0.0).astype(np.float32)


def _event_motion(event, t, height, width):
  """Center (x, y) in pixels, radius in pixels and brightness of an event's object at times t."""
  cls = event_class(event["cls"])
  env = _decay_envelope(t, event["onsets"])
  x = np.full_like(t, event["x"] * width)
  y = np.full_like(t, event["y"] * height)
  interval = cls["onset_interval"]
  first = event["onsets"][0] if event["onsets"] else event["start"]
  if cls["motion"] == "sweep":  # turns around at every onset
    p = (t - first) / interval
    x = x + event["direction"] * 0.12 * width * (1 - 2 * np.abs(np.mod(p, 2) - 1))
  elif cls["motion"] == "hop":  # jumps at every onset
    y = y - 0.15 * height * env
  else:  # orbit, a quarter turn between onsets
    a = event["direction"] * (t - first) / interval * np.pi / 2
    x, y = x + 0.1 * height * np.cos(a), y + 0.1 * height * np.sin(a)
  radius = 0.08 * height * event["size"] * (1 + 0.25 * env)
  return x, y, radius, 0.65 + 0.35 * env


def _shape_distance(shape, dx, dy):
  """Signed distance (in object radii) to the outline of a unit shape; < 0 inside."""
  if shape == "disc":
    return np.hypot(dx, dy) - 1
  if shape == "square":
    return np.maximum(np.abs(dx), np.abs(dy)) - 0.85
  if shape == "triangle":
    return np.maximum(dy - 0.7, (1.7 * np.abs(dx) - dy - 1) / 1.97)
  if shape == "ring":
    return np.abs(np.hypot(dx, dy) - 0.75) - 0.25
  if shape == "cross":
    return np.minimum(np.maximum(np.abs(dx) - 0.3, np.abs(dy) - 1),
                      np.maximum(np.abs(dy) - 0.3, np.abs(dx) - 1))
  raise ValueError(f"unknown shape {shape!r}")


def _draw_event(frames, event, t, style, options):
  """Composites an event's object onto frames [N, H, W, 3] (uint8, in place).

  The object's coverage is computed for all frames at once, in a box around each
  frame's object, so that large frames cost no more than small ones.
  """
  n, height, width, _ = frames.shape
  alpha_t = _window(t, event["start"], event["end"])
  live = alpha_t > 0
  if not live.any():
    return
  x, y, r, bright = (v.astype(np.float32) for v in _event_motion(event, t, height, width))
  box = 2 * int(np.ceil(r[live].max())) + 3
  ox = np.floor(x - box / 2).astype(np.int64)
  oy = np.floor(y - box / 2).astype(np.int64)
  grid = np.arange(box, dtype=np.float32)
  dx = (ox[:, None, None] + grid[None, None, :] + 0.5 - x[:, None, None]) / r[:, None, None]
  dy = (oy[:, None, None] + grid[None, :, None] + 0.5 - y[:, None, None]) / r[:, None, None]
  d = _shape_distance(event_class(event["cls"])["shape"], dx, dy)
  alpha = np.clip(0.5 - d * r[:, None, None], 0, 1) * alpha_t[:, None, None]
  s = float(np.clip(options.artifact_strength, 0, 1))
  color = _grade(s * np.asarray(style["accent"]) + (1 - s) * 0.9, style, options.artifact_strength)
  color = np.clip(color[None] * bright[:, None] * 1.15, 0, 1) * 255
  for i in np.flatnonzero(live):
    x0, y0 = max(0, ox[i]), max(0, oy[i])
    x1, y1 = min(width, ox[i] + box), min(height, oy[i] + box)
    if x0 >= x1 or y0 >= y1:
      continue
    a = alpha[i, y0 - oy[i]:y1 - oy[i], x0 - ox[i]:x1 - ox[i], None]
    region = frames[i, y0:y1, x0:x1]
    frames[i, y0:y1, x0:x1] = (region * (1 - a) + color[i] * a + 0.5).astype(np.uint8)


def _draw_character(frames, scene, location, t, style, options):
  """Pastes the title's sprite; its lower part (the mouth) lights up with its voice.

  Frames of a chunk share one background, so the sprite is composited once per
  loudness level (9 levels) and each frame takes the patch of its level.
  """
  strength = float(np.clip(options.artifact_strength, 0, 1))
  if not scene["character"] or strength <= 0 or not len(frames):
    return
  _, height, width, _ = frames.shape
  cell = max(1, int(0.3 * height / 5))
  mask = np.kron(np.asarray(style["sprite"], np.float32), np.ones((cell, cell), np.float32))
  sh, sw = mask.shape
  x0 = int(location["character_x"] * width)
  y0 = int(0.9 * height) - sh - int(style["letterbox"] * height)
  if x0 + sw > width or y0 < 0:
    return
  mouth = np.zeros((sh, 1, 1), np.float32)
  mouth[3 * sh // 5:] = 1
  levels = np.linspace(0, 1, 9, dtype=np.float32)[:, None, None, None]
  color = _grade(style["sprite_color"], style, options.artifact_strength) * 255
  lit = np.minimum(color * (0.6 + 0.4 * mouth[None] * levels), 255)
  a = (strength * mask)[None, ..., None]
  region = frames[0, y0:y0 + sh, x0:x0 + sw].astype(np.float32)[None]
  patches = (region * (1 - a) + lit * a + 0.5).astype(np.uint8)
  level = np.round(_syllable_envelope(t, scene["syllables"]) * 8).astype(np.int64)
  frames[:, y0:y0 + sh, x0:x0 + sw] = patches[level]


def _oscillator(timbre, f, t, env, rng):
  phase = 2 * np.pi * f * t
  if timbre == "sine":
    return np.sin(phase)
  if timbre == "square":
    return np.tanh(4 * np.sin(phase))
  if timbre == "saw":
    return sum(np.sin(h * phase) / h for h in range(1, 8)) * 0.6
  if timbre == "bell":
    return np.sin(phase + 2.0 * env * np.sin(2 * np.pi * 1.41 * f * t))
  if timbre == "noise":  # noise band around the pitch
    spec = np.fft.rfft(rng.standard_normal(t.size))
    freqs = np.fft.rfftfreq(t.size, d=(t[1] - t[0]) if t.size > 1 else 1.0)
    band = np.exp(-0.5 * ((freqs - 2 * f) / (0.25 * f)) ** 2)
    x = np.fft.irfft(spec * band, n=t.size)
    return x / (np.abs(x).max() + 1e-9)
  raise ValueError(f"unknown timbre {timbre!r}")


def _lowpass_noise(rng, n, rate, cutoff):
  spec = np.fft.rfft(rng.standard_normal(n))
  spec *= 1 / (1 + (np.fft.rfftfreq(n, 1 / rate) / cutoff) ** 2)
  x = np.fft.irfft(spec, n=n)
  return x / (x.std() + 1e-9)


def _render_audio(plan, scene, events, s0, s1, options):
  """Audio samples [s0, s1) of a title at its own rate: float32 [channels, n] in [-1, 1]."""
  style = plan["style"]
  rate = style["sample_rate"]
  strength = options.artifact_strength
  t = np.arange(s0, s1, dtype=np.float64) / rate
  center = np.zeros_like(t)
  left = np.zeros_like(t)
  right = np.zeros_like(t)
  for event in events:
    cls = event_class(event["cls"])
    env = _decay_envelope(t, event["onsets"]) * _window(t, event["start"], event["end"])
    rng = _rng(event["seed"], s0)
    sound = 0.35 * env * _oscillator(cls["timbre"], event["pitch_hz"], t, env, rng)
    # Equal-power pan with the object's place in the picture.
    pan = np.clip(event["x"], 0, 1) * np.pi / 2
    left += np.cos(pan) * sound * np.sqrt(2)
    right += np.sin(pan) * sound * np.sqrt(2)
  if scene["character"] and strength > 0:
    voice = _syllable_envelope(t, scene["syllables"])
    f0, (f1, f2) = style["voice_hz"], style["formants"]
    # Harmonics of f0 weighted by two formants; only the audible ones are computed.
    h = np.arange(1, int(3000 / f0))
    weight = np.exp(-((h * f0 - f1) / 150) ** 2) + 0.6 * np.exp(-((h * f0 - f2) / 250) ** 2)
    weight[0] = max(weight[0], 0.3)
    buzz = sum(w * np.sin(2 * np.pi * k * f0 * t) / k for k, w in zip(h, weight) if w > 0.02)
    center += 0.3 * strength * voice * buzz
  if strength > 0:
    note = np.floor(t / style["note_seconds"]).astype(np.int64)
    freq = np.asarray(style["music_hz"])[np.asarray(style["motif"])[note % len(style["motif"])]]
    shape = np.sin(np.pi * np.mod(t / style["note_seconds"], 1)) ** 2
    tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)
    root, fifth = style["music_hz"][0], style["music_hz"][3]
    drone = np.sin(np.pi * root * t) + 0.7 * np.sin(2 * np.pi * fifth * t)
    hum = np.sin(2 * np.pi * style["hum_hz"] * t) + 0.5 * np.sin(6 * np.pi * style["hum_hz"] * t)
    center += strength * (0.08 * shape * tone + 0.03 * drone + 0.015 * hum)
  center += scene["room_level"] * _lowpass_noise(_rng(plan["seed"], s0), t.size, rate,
                                                scene["room_cutoff"])
  mix = np.stack([center + left, center + right])
  if style["channels"] == 1:
    mix = mix.mean(0, keepdims=True)
  return (0.95 * np.tanh(mix)).astype(np.float32)


class MediaWriter:
  """Writes an H.264 (+ AAC) file with PyAV, atomically: a temporary name renamed on close.

  Video frames get timestamps i / fps, or, with `vfr=True`, the explicit `times`
  passed to `write_frames` (variable frame rate). `channels=0` writes no audio track.
  """

  def __init__(self, path, *, width, height, fps, sample_rate=48000, channels=2,
               crf=23, preset="veryfast", faststart=False, vfr=False):
    ext = os.path.splitext(path)[1].lower()
    if ext not in _CONTAINERS:
      raise ValueError(f"{path}: cannot write {ext!r}; use one of {sorted(_CONTAINERS)}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.path = path
    self._tmp = f"{path}.{os.getpid()}.tmp"
    options = {"movflags": "faststart"} if faststart and _CONTAINERS[ext] != "matroska" else {}
    self._container = av.open(self._tmp, "w", format=_CONTAINERS[ext], options=options)
    self._rate = fractions.Fraction(fps).limit_denominator(1001)
    self._video = self._container.add_stream("libx264", rate=self._rate)
    self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
    self._video.options = {"crf": str(crf), "preset": preset}
    self._vfr = vfr
    self._time_base = fractions.Fraction(1, 90000) if vfr else 1 / self._rate
    self._video.codec_context.time_base = self._time_base
    self._video.time_base = self._time_base
    self._audio = None
    self._channels, self._sample_rate = channels, sample_rate
    if channels:
      self._audio = self._container.add_stream("aac", rate=sample_rate)
      self._audio.layout = {1: "mono", 2: "stereo"}[channels]
    self._num_frames = 0
    self._num_samples = 0

  def write_frames(self, frames, times=None):
    """frames: uint8 [N, H, W, 3]; times: seconds of each frame (only with vfr=True)."""
    if (times is not None) != self._vfr:
      raise ValueError(f"{self.path}: pass frame times exactly when the writer is vfr")
    for j, frame in enumerate(frames):
      vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
      vf.pts = int(round(times[j] / self._time_base)) if self._vfr else self._num_frames
      vf.time_base = self._time_base
      self._container.mux(self._video.encode(vf))
      self._num_frames += 1

  def write_audio(self, samples):
    """samples: float32 [channels, n] (or [n] for mono) in [-1, 1], continuing the track."""
    samples = np.asarray(samples, np.float32)
    samples = samples[None] if samples.ndim == 1 else samples
    if samples.shape[0] != self._channels:
      raise ValueError(f"{self.path}: {samples.shape[0]} audio channels, "
                       f"the stream has {self._channels}")
    if not samples.shape[1]:
      return
    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp",
                                    layout=self._audio.layout.name)
    af.sample_rate = self._sample_rate
    af.pts = self._num_samples
    af.time_base = fractions.Fraction(1, self._sample_rate)
    self._container.mux(self._audio.encode(af))
    self._num_samples += samples.shape[1]

  def close(self):
    try:
      self._container.mux(self._video.encode())
      if self._audio is not None:
        # The encoder drops a last partial frame: pad it with silence so no audio is lost.
        frame_size = self._audio.codec_context.frame_size or 1024
        pad = -self._num_samples % frame_size
        if pad:
          self.write_audio(np.zeros((self._channels, pad), np.float32))
        self._container.mux(self._audio.encode())
      self._container.close()
      os.replace(self._tmp, self.path)
    except BaseException:
      self.abort()
      raise

  def abort(self):
    try:
      self._container.close()
    except Exception:  # pylint: disable=broad-except
      pass  # already failing; the temporary file goes either way
    if os.path.exists(self._tmp):
      os.remove(self._tmp)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    if exc_type is None:
      self.close()
    else:
      self.abort()


def render_chunks(plan, options=Options()):
  """Yields (frames uint8 [N, H, W, 3], audio float32 [C, n]) per snippet-sized span of a title."""
  style = plan["style"]
  height, width = options.height, options.width
  rate = style["sample_rate"]
  L = options.snippet_seconds
  locations = {loc["id"]: loc for loc in plan["locations"]}
  backgrounds = {}
  grain = None
  if options.grain > 0:
    # A few noise images, cycled: fresh noise per frame costs more than the rest of a frame.
    grain = _rng(plan["seed"], 1).normal(0, options.grain, (8, height, width, 1)).round()
    grain = grain.astype(np.int16)
  bar = int(style["letterbox"] * min(options.artifact_strength, 1) * height)
  num_frames, total_samples = plan["num_frames"], int(round(plan["duration"] * rate))
  events = {e["span"]: e for e in plan["events"]}
  k = 0
  while k * L < plan["duration"] - 1e-9:
    i0 = int(np.ceil(k * L * options.fps - 1e-6))
    i1 = min(num_frames, int(np.ceil((k + 1) * L * options.fps - 1e-6)))
    s0 = int(round(k * L * rate))
    s1 = min(total_samples, int(round((k + 1) * L * rate)))
    scene = next(s for s in plan["scenes"] if s["start"] <= k * L + 1e-6 < s["end"] + 1e-9)
    location = locations[scene["location"]]
    if location["id"] not in backgrounds:
      backgrounds[location["id"]] = _background(location, style, options, height, width)
    span_events = [events[k]] if k in events else []
    t = np.arange(i0, i1, dtype=np.float64) / options.fps
    frames = np.repeat(backgrounds[location["id"]][None], i1 - i0, axis=0)
    _draw_character(frames, scene, location, t, style, options)
    for event in span_events:
      _draw_event(frames, event, t, style, options)
    if grain is not None:
      for i, frame in enumerate(frames):  # one frame at a time: no chunk-sized temporaries
        noisy = frame + grain[(i0 + i) % len(grain)]
        np.clip(noisy, 0, 255, out=noisy)
        frame[...] = noisy
    if bar:
      frames[:, :bar] = 0
      frames[:, height - bar:] = 0
    yield frames, _render_audio(plan, scene, span_events, s0, s1, options)
    k += 1


def render_title(plan, path, options=Options()):
  """Writes one planned title as an H.264 + AAC file at `path`."""
  style = plan["style"]
  with MediaWriter(path, width=options.width, height=options.height, fps=options.fps,
                   sample_rate=style["sample_rate"], channels=style["channels"],
                   crf=options.crf, preset=options.preset) as writer:
    for frames, audio in render_chunks(plan, options):
      writer.write_frames(frames)
      writer.write_audio(audio)


def labels(plans, *, seed, options=Options()):
  """Ground truth of a collection: classes, and per title its events and scenes."""
  titles = {}
  for p in plans:
    titles[p["id"]] = dict(
        kind=p["kind"], show=p["show"], genres=p["genres"], path=p["path"],
        duration=p["duration"], sample_rate=p["style"]["sample_rate"],
        channels=p["style"]["channels"],
        events=[dict(title=p["id"], start=e["start"], end=e["end"], **{"class": e["cls"]},
                     span=e["span"], onsets=e["onsets"]) for e in p["events"]],
        scenes=[dict(start=s["start"], end=s["end"], location=s["location"],
                     character=s["character"]) for s in p["scenes"]],
    )
  return dict(format_version=1, seed=seed, snippet_seconds=options.snippet_seconds,
              artifact_strength=options.artifact_strength,
              classes=[event_class(c) for c in range(options.classes)],
              options={k: list(v) if isinstance(v, tuple) else v
                       for k, v in dataclasses.asdict(options).items()},
              titles=titles)


def write_titles_csv(path, plans):
  with fileio.atomic_path(path) as tmp:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
      w = csv.writer(f)
      w.writerow(["title_id", "kind", "show_id", "genres", "path"])
      for p in plans:
        w.writerow([p["id"], p["kind"], p["show"] or "", "|".join(p["genres"]), p["path"]])


def generate(output, *, movies, shows, episodes, minutes, seed, options=Options()):
  """Writes a synthetic collection to `output`; returns its plans."""
  plans = plan_collection(movies=movies, shows=shows, episodes=episodes, minutes=minutes,
                          seed=seed, options=options)
  for i, plan in enumerate(plans):
    render_title(plan, os.path.join(output, plan["path"]), options)
    logging.info("wrote %s (%d/%d, %.1f min)", plan["path"], i + 1, len(plans),
                 plan["duration"] / 60)
  write_titles_csv(os.path.join(output, TITLES_CSV), plans)
  fileio.write_json(os.path.join(output, LABELS), labels(plans, seed=seed, options=options))
  return plans
