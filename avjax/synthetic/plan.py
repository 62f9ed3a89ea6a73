"""Synthetic titles, planned: every random choice as plain data (styles, scenes, events).

Rendering (synthetic_render) is a pure function of a plan, so plans, labels and the
rendered pictures and sound are functions of the seed and the options alone. See
synthetic.py for what the generated titles carry.
"""

import colorsys
import dataclasses

import numpy as np

# Class c is (shape, timbre) = pair c % 5, (motion, onset interval) = c // 5 % 3 and
# pitch octave c // 15: what is seen and what is heard always change together.
SHAPES = ("disc", "square", "triangle", "ring", "cross")
TIMBRES = ("sine", "square", "saw", "bell", "noise")
MOTIONS = ("sweep", "hop", "orbit")
ONSET_INTERVALS = (0.5, 1 / 3, 0.25)
MAX_CLASSES = len(SHAPES) * len(MOTIONS) * 2
GENRES = ("action", "animation", "comedy", "crime", "documentary", "drama", "family",
          "horror", "romance", "scifi", "thriller", "western")
# Genre looks (Options.genre_looks): title-level cues that generalise across titles, as a
# genre's palette and music do in films (a dark palette goes with low, brooding music).
# Each look sets a palette family (hue, brightness, saturation) and a music register,
# timbre and tempo; a title of the genre draws its own palette, grade, voice, theme and
# motif inside them. Independent of the event classes.
GENRE_LOOKS = (
    dict(genre="crime", hue=0.62, value=(0.15, 0.45), saturation=(0.3, 0.6),
         root_hz=(70.0, 95.0), timbre="saw", note_seconds=(0.45, 0.6)),
    dict(genre="comedy", hue=0.12, value=(0.6, 0.95), saturation=(0.6, 0.9),
         root_hz=(270.0, 330.0), timbre="sine", note_seconds=(0.2, 0.3)),
    dict(genre="family", hue=0.33, value=(0.35, 0.7), saturation=(0.5, 0.85),
         root_hz=(120.0, 150.0), timbre="square", note_seconds=(0.3, 0.42)),
    dict(genre="romance", hue=0.92, value=(0.5, 0.85), saturation=(0.35, 0.7),
         root_hz=(180.0, 220.0), timbre="bell", note_seconds=(0.36, 0.5)),
)

FADE = 0.05  # s; events fade in and out so that no event is a hard cut
DECAY = 0.15  # s; envelope decay after each onset, shared by sound and picture


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
  # Shots per scene: camera changes inside one location (each shot a new framing of the set:
  # zoom and pan). (1, 1): one shot per scene, every cut a scene change.
  scene_shots: tuple = (1, 1)
  min_shot_seconds: float = 1.0  # no shot inside a scene is shorter
  camera_zoom: tuple = (1.0, 1.5)  # range of a shot's zoom into its location's set
  light: tuple = (0.4, 1.3)  # range of a location's lighting (multiplies its colours)
  grade: float = 1.0  # scale of the title's colour grade (per-channel gain and lift)
  room_level: tuple = (0.005, 0.02)  # range of a scene's room-tone level
  room_cutoff: tuple = (300.0, 3000.0)  # range of its low-pass cutoff (Hz)
  grain: float = 0.0  # film grain std in 8-bit levels; makes H.264 work like on real footage
  crf: int = 23
  preset: str = "veryfast"
  # Events. The defaults draw small objects in the title's accent colour that sound only
  # in short pings; the presets (synthetic_presets.py) make them large, title-independent
  # and sustained.
  event_scale: float = 1.0  # object radius, in multiples of 8% of the frame height
  event_x: tuple = (0.25, 0.75)  # range of the object's horizontal place (frame widths)
  event_margin: tuple = (0.1, 0.4)  # range of the gap (s) between a span's edges and its event
  event_color: str = "accent"  # "accent": the title's accent colour; "any": drawn per event;
  #                              "class": the class's own hue
  event_outline: float = 0.0  # dark outline around the object, in object radii
  event_level: float = 0.35  # peak amplitude of an event's sound
  event_sustain: float = 0.0  # envelope level between onsets (0: pings that decay to silence)
  event_rms: bool = False  # scale every timbre to a sine's loudness (else to its peak)
  voice_level: float = 0.3  # peak amplitude of the recurring character's voice
  # Title-exclusive sound: narrow noise bands at frequencies of the title's own (like a
  # film's room tone or a show's theme bed); 0 leaves them out. Scaled by artifact_strength.
  theme_level: float = 0.0
  audio_codec: str = "aac"  # or "flac": lossless and much faster to encode
  # Genre looks (GENRE_LOOKS): 0 leaves them out; n > 0 gives every title (every show) one
  # of the first n looks, drawn uniformly, which replaces its palette, music register,
  # timbre and tempo by draws inside the look, and its genres by the look's genre.
  genre_looks: int = 0

  def __post_init__(self):
    if self.event_color not in ("accent", "any", "class"):
      raise ValueError(f"event_color={self.event_color!r}: expected 'accent', 'any' or 'class'")
    if not 1 <= self.scene_shots[0] <= self.scene_shots[1]:
      raise ValueError(f"scene_shots={self.scene_shots}: expected 1 <= low <= high")
    if self.audio_codec not in ("aac", "flac"):
      raise ValueError(f"audio_codec={self.audio_codec!r}: expected 'aac' or 'flac'")
    if not 0 <= self.genre_looks <= len(GENRE_LOOKS):
      raise ValueError(f"genre_looks={self.genre_looks}: expected 0 to {len(GENRE_LOOKS)}")


def event_class(c):
  """The definition of event class c: the same for every seed, so sets share semantics."""
  if not 0 <= c < MAX_CLASSES:
    raise ValueError(f"event class {c} out of range [0, {MAX_CLASSES})")
  rhythm = c // len(SHAPES) % len(MOTIONS)
  return dict(id=c, shape=SHAPES[c % len(SHAPES)], timbre=TIMBRES[c % len(SHAPES)],
              motion=MOTIONS[rhythm], onset_interval=ONSET_INTERVALS[rhythm],
              pitch_hz=round(220.0 * 2 ** ((c * 7 % 12) / 12 + c // 15), 3))


# Every random draw happens here; rendering is a pure function of the plan.


def rng_for(*key):
  """A generator seeded by a tuple of ints (seed, title, span, ...)."""
  return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def hsv(h, s, v):
  return list(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


def _style(rng, options, extra_rng):
  """Artifacts shared by a whole title or show: palette, grade, sprite, voice, music, hum.

  `extra_rng` draws the theme bands, so that adding them left every earlier draw as it was.
  """
  hue = rng.random()
  palette = [hsv(hue + rng.normal(0, 0.06), rng.uniform(0.35, 0.9), rng.uniform(0.25, 0.95))
             for _ in range(5)]
  half = rng.random((5, 3)) < 0.5
  sprite = np.concatenate([half, half[:, 1::-1]], axis=1)
  sprite[1, 1] = sprite[1, 3] = True  # eyes: never an empty sprite
  scale = np.array([1.0, 9 / 8, 5 / 4, 3 / 2, 5 / 3, 2.0]) if rng.random() < 0.5 else \
      np.array([1.0, 6 / 5, 4 / 3, 3 / 2, 9 / 5, 2.0])
  rate = options.sample_rate or int(rng.choice([48000, 44100]))
  return dict(
      palette=palette,
      accent=hsv(hue + 0.5, 0.8, 1.0),
      gain=list(1 + 0.15 * rng.normal(size=3)),
      lift=list(0.05 * rng.normal(size=3)),
      letterbox=float(0.12 if rng.random() < 0.3 else 0.0),
      sprite=sprite.astype(int).tolist(),
      sprite_color=hsv(hue + rng.uniform(0.3, 0.7), 0.7, 0.95),
      voice_hz=float(rng.uniform(100, 260)),
      formants=[float(rng.uniform(300, 800)), float(rng.uniform(900, 2200))],
      music_hz=list(float(f) for f in rng.uniform(110, 220) * scale),
      motif=rng.integers(0, 6, size=int(rng.integers(4, 9))).tolist(),
      note_seconds=float(rng.uniform(0.25, 0.6)),
      hum_hz=float(rng.choice([50.0, 60.0])),
      sample_rate=rate,
      channels=int(rng.choice([1, 2])),
      theme_hz=sorted(float(f) for f in np.exp(extra_rng.uniform(
          np.log(1500), np.log(min(12000, 0.4 * rate)), 3))),
  )


def _genre_style(style, look, rng):
  """`style` with its palette and music redrawn inside a genre look (GENRE_LOOKS)."""
  hue = look["hue"] + rng.uniform(-0.06, 0.06)  # the title's own shade of the look's hue
  palette = [hsv(hue + rng.normal(0, 0.03), rng.uniform(*look["saturation"]),
                 rng.uniform(*look["value"])) for _ in range(5)]
  minor = rng.random() < 0.5
  scale = np.array([1.0, 6 / 5, 4 / 3, 3 / 2, 9 / 5, 2.0] if minor else
                   [1.0, 9 / 8, 5 / 4, 3 / 2, 5 / 3, 2.0])
  return dict(style, palette=palette, accent=hsv(hue + 0.5, 0.8, 1.0),
              music_hz=[float(f) for f in rng.uniform(*look["root_hz"]) * scale],
              note_seconds=float(rng.uniform(*look["note_seconds"])),
              music_timbre=look["timbre"])


def _scenes(rng, num_spans, duration, options):
  """Scenes as runs of spans; some return to an earlier location (a recurring set)."""
  lo, hi = options.scene_spans
  scenes, locations, span = [], [], 0
  while span * options.snippet_seconds < duration:
    n = int(rng.integers(lo, hi + 1))
    # Consecutive sets differ in lighting (and layout), so that every cut is a visible one.
    previous = locations[scenes[-1]["location"]]["light"] if scenes else -1.0
    lo_light, hi_light = options.light
    gap = min(0.25, (hi_light - lo_light) / 3)  # always reachable from any previous light
    others = [loc for loc in locations if abs(loc["light"] - previous) >= gap]
    if others and rng.random() < 0.3:
      location = others[int(rng.integers(len(others)))]
    else:
      light = float(rng.uniform(lo_light, hi_light))
      while abs(light - previous) < gap:
        light = float(rng.uniform(lo_light, hi_light))
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
                       room_level=float(rng.uniform(*options.room_level)),
                       room_cutoff=float(rng.uniform(*options.room_cutoff))))
    span += n
    if end >= duration:
      break
  return scenes, locations


def _shots(rng, scene, options):
  """Shots of a scene: start times (frame-aligned, the first at the scene's start) and a
  camera per shot (zoom into the set and the place it looks at, as fractions of the slack)."""
  lo, hi = options.scene_shots
  start, end, fps = scene["start"], scene["end"], options.fps
  room = int((end - start) // options.min_shot_seconds)
  n = min(int(rng.integers(lo, hi + 1)), max(1, room))
  cuts = []
  if n > 1:  # n - 1 cuts, at least min_shot_seconds apart and from the scene's edges
    free = (end - start) - n * options.min_shot_seconds
    gaps = np.sort(rng.uniform(0, free, n - 1))
    cuts = [start + (i + 1) * options.min_shot_seconds + g for i, g in enumerate(gaps)]
    cuts = [round(np.ceil(c * fps - 1e-6) / fps, 6) for c in cuts]
  cameras = [dict(zoom=float(rng.uniform(*options.camera_zoom)), x=float(rng.random()),
                  y=float(rng.random())) for _ in range(n)]
  return [round(start, 6)] + cuts, cameras


def _events(rng, num_spans, options):
  """One event per full span: class, span inside the snippet, place, size, onsets."""
  L = options.snippet_seconds
  lo, hi = options.event_margin
  events = []
  for k in range(num_spans):
    c = int(rng.integers(options.classes))
    cls = event_class(c)
    start = k * L + rng.uniform(lo, hi)
    end = (k + 1) * L - rng.uniform(lo, hi)
    first = start + rng.uniform(0.05, cls["onset_interval"])
    onsets = np.arange(first, end - 0.1, cls["onset_interval"])
    size = float(rng.uniform(0.7, 1.3))
    events.append(dict(
        span=k, start=round(float(start), 6), end=round(float(end), 6), cls=c,
        x=float(rng.uniform(*options.event_x)), y=float(rng.uniform(0.3, 0.7)), size=size,
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
    style_rng = rng_for(seed, 0 if kind == "movie" else 1, i)  # shared by a show's episodes
    style = _style(style_rng, options, rng_for(seed, 3, 0 if kind == "movie" else 1, i))
    genres = sorted(style_rng.choice(GENRES, size=int(style_rng.integers(1, 4)), replace=False))
    look = None
    if options.genre_looks:  # generators of their own: other draws stay as they were
      look = int(rng_for(seed, 6, 0 if kind == "movie" else 1, i).integers(options.genre_looks))
      style = _genre_style(style, GENRE_LOOKS[look],
                           rng_for(seed, 7, 0 if kind == "movie" else 1, i))
      genres = [GENRE_LOOKS[look]["genre"]]
    if kind == "movie":
      tid, show, path = f"movie{i:03d}", None, f"movies/movie{i:03d}.mp4"
    else:
      show = f"show{i:02d}"
      tid, path = f"{show}_e{e:02d}", f"shows/{show}/e{e:02d}.mp4"
    rng = rng_for(seed, 2, 0 if kind == "movie" else 1, i, 0 if e is None else e + 1)
    num_frames = max(1, int(round(minutes * 60 * rng.uniform(0.9, 1.1) * options.fps)))
    duration = num_frames / options.fps
    num_spans = int((duration + 1e-9) // options.snippet_seconds)
    scenes, locations = _scenes(rng, num_spans, duration, options)
    for scene in scenes:
      scene["syllables"] = _syllables(rng, scene) if scene["character"] else []
    if options.scene_shots != (1, 1):  # its own generator: one-shot scenes draw as before
      shot_rng = rng_for(seed, 4, 0 if kind == "movie" else 1, i, 0 if e is None else e + 1)
      for scene in scenes:
        scene["shots"], scene["cameras"] = _shots(shot_rng, scene, options)
    plans.append(dict(id=tid, kind=kind, show=show, genres=[str(g) for g in genres], look=look,
                      path=path, seed=int(rng.integers(2**31)), duration=duration,
                      num_frames=num_frames, style=style,
                      scenes=scenes, locations=locations, events=_events(rng, num_spans, options)))
  return plans
