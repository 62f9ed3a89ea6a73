"""Synthetic titles, rendered: a plan's pictures and sound, snippet-sized span by span."""

import numpy as np

from avjax.synthetic.plan import DECAY, FADE, Options, event_class, hsv, rng_for
from avjax.media import writer as media_writer

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
  return (_grade(img, style, options.artifact_strength * options.grade) * 255 + 0.5).astype(np.uint8)


def _framed(background, camera):
  """A shot's view of a set: the background zoomed by camera["zoom"] around its place."""
  if camera is None or camera["zoom"] <= 1.0:
    return background
  height, width, _ = background.shape
  h, w = max(1, int(round(height / camera["zoom"]))), max(1, int(round(width / camera["zoom"])))
  y0, x0 = int(camera["y"] * (height - h)), int(camera["x"] * (width - w))
  rows = y0 + (np.arange(height) * h // height)
  cols = x0 + (np.arange(width) * w // width)
  return background[rows[:, None], cols[None, :]]


def _decay_envelope(t, onsets):
  """exp(-dt/decay) since the latest onset at or before t; 0 before the first onset."""
  onsets = np.asarray(onsets, np.float64)
  if onsets.size == 0:
    return np.zeros_like(t, dtype=np.float32)
  i = np.searchsorted(onsets, t, side="right") - 1
  dt = t - onsets[np.maximum(i, 0)]
  return np.where(i >= 0, np.exp(-dt / DECAY), 0.0).astype(np.float32)


def _window(t, start, end):
  return np.clip(np.minimum(t - start, end - t) / FADE, 0, 1).astype(np.float32)


def _syllable_envelope(t, syllables):
  if not syllables:
    return np.zeros_like(t, dtype=np.float32)
  starts = np.asarray([s for s, _ in syllables])
  lengths = np.asarray([l for _, l in syllables])
  i = np.maximum(np.searchsorted(starts, t, side="right") - 1, 0)
  phase = (t - starts[i]) / lengths[i]
  return np.where((phase >= 0) & (phase < 1), np.sin(np.pi * np.clip(phase, 0, 1)) ** 2,
                  0.0).astype(np.float32)


def _event_motion(event, t, height, width, scale=1.0):
  """Center (x, y) in pixels, radius in pixels and brightness of an event's object at times t.

  `scale` multiplies the radius (Options.event_scale)."""
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
  radius = 0.08 * scale * height * event["size"] * (1 + 0.25 * env)
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


def _event_color(event, style, options):
  """The object's colour before grading (Options.event_color)."""
  if options.event_color == "accent":  # the title's accent colour: a title cue as well
    s = float(np.clip(options.artifact_strength, 0, 1))
    return s * np.asarray(style["accent"]) + (1 - s) * 0.9
  if options.event_color == "any":  # drawn per event: says nothing of the title or class
    u = rng_for(event["seed"], 7).random(2)
    return np.asarray(hsv(u[0], 0.55 + 0.4 * u[1], 1.0))
  return np.asarray(hsv(event["cls"] * 0.618034, 0.85, 1.0))  # "class": its own hue


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
  x, y, r, bright = (v.astype(np.float32) for v in _event_motion(event, t, height, width,
                                                                 options.event_scale))
  outline = float(options.event_outline)
  box = 2 * int(np.ceil(r[live].max() * (1 + outline))) + 3
  ox = np.floor(x - box / 2).astype(np.int64)
  oy = np.floor(y - box / 2).astype(np.int64)
  grid = np.arange(box, dtype=np.float32)
  dx = (ox[:, None, None] + grid[None, None, :] + 0.5 - x[:, None, None]) / r[:, None, None]
  dy = (oy[:, None, None] + grid[None, :, None] + 0.5 - y[:, None, None]) / r[:, None, None]
  d = _shape_distance(event_class(event["cls"])["shape"], dx, dy)
  alpha = np.clip(0.5 - d * r[:, None, None], 0, 1) * alpha_t[:, None, None]
  if outline > 0:  # a dark rim: the outline reads against any background
    rim = np.clip(0.5 - (d - outline) * r[:, None, None], 0, 1) * alpha_t[:, None, None]
  color = _grade(_event_color(event, style, options), style,
                 options.artifact_strength * options.grade)
  color = np.clip(color[None] * bright[:, None] * 1.15, 0, 1) * 255
  for i in np.flatnonzero(live):
    x0, y0 = max(0, ox[i]), max(0, oy[i])
    x1, y1 = min(width, ox[i] + box), min(height, oy[i] + box)
    if x0 >= x1 or y0 >= y1:
      continue
    window = (i, slice(y0 - oy[i], y1 - oy[i]), slice(x0 - ox[i], x1 - ox[i]), None)
    region = frames[i, y0:y1, x0:x1].astype(np.float32)
    if outline > 0:
      region = region * (1 - 0.85 * rim[window])
    a = alpha[window]
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
  color = _grade(style["sprite_color"], style,
                 options.artifact_strength * options.grade) * 255
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


def _bands(rng, n, rate, centers, width=0.04):
  """Unit-RMS noise in narrow bands (relative width `width`) around `centers` (Hz)."""
  spec = np.fft.rfft(rng.standard_normal(n))
  freqs = np.fft.rfftfreq(n, 1 / rate)
  spec *= sum(np.exp(-0.5 * ((freqs - f) / (width * f)) ** 2) for f in centers)
  x = np.fft.irfft(spec, n=n)
  return x / (x.std() + 1e-9)


def _render_audio(plan, scene, events, s0, s1, options):
  """Audio samples [s0, s1) of a title at its own rate: float32 [channels, n] in [-1, 1]."""
  style = plan["style"]
  rate = style["sample_rate"]
  strength = options.artifact_strength
  t = np.arange(s0, s1, dtype=np.float64) / rate
  center, left, right = (np.zeros_like(t) for _ in range(3))
  sustain = float(options.event_sustain)
  for event in events:
    cls = event_class(event["cls"])
    env = _decay_envelope(t, event["onsets"]) * _window(t, event["start"], event["end"])
    if sustain > 0:  # the sound holds between onsets instead of dying away
      env = (sustain * _window(t, event["start"], event["end"]) + (1 - sustain) * env).astype(
          np.float32)
    rng = rng_for(event["seed"], s0)
    wave = _oscillator(cls["timbre"], event["pitch_hz"], t, env, rng)
    if options.event_rms:  # every timbre as loud as a sine of the same peak
      wave = wave * (np.sqrt(0.5) / (np.sqrt(np.mean(wave ** 2)) + 1e-9))
    sound = options.event_level * env * wave
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
    center += options.voice_level * strength * voice * buzz
  if strength > 0:
    note = np.floor(t / style["note_seconds"]).astype(np.int64)
    freq = np.asarray(style["music_hz"])[np.asarray(style["motif"])[note % len(style["motif"])]]
    shape = np.sin(np.pi * np.mod(t / style["note_seconds"], 1)) ** 2
    if "music_timbre" in style:  # a genre look's instrument (plan.GENRE_LOOKS)
      tone = 1.2 * _oscillator(style["music_timbre"], freq, t, shape, None)
    else:
      tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)
    root, fifth = style["music_hz"][0], style["music_hz"][3]
    drone = np.sin(np.pi * root * t) + 0.7 * np.sin(2 * np.pi * fifth * t)
    hum = np.sin(2 * np.pi * style["hum_hz"] * t) + 0.5 * np.sin(6 * np.pi * style["hum_hz"] * t)
    center += strength * (0.08 * shape * tone + 0.03 * drone + 0.015 * hum)
  if strength > 0 and options.theme_level > 0:
    center += strength * options.theme_level * _bands(rng_for(plan["seed"], 5, s0), t.size, rate,
                                                      style["theme_hz"])
  center += scene["room_level"] * _lowpass_noise(rng_for(plan["seed"], s0), t.size, rate,
                                                scene["room_cutoff"])
  mix = np.stack([center + left, center + right])
  if style["channels"] == 1:
    mix = mix.mean(0, keepdims=True)
  return (0.95 * np.tanh(mix)).astype(np.float32)


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
    grain = rng_for(plan["seed"], 1).normal(0, options.grain, (8, height, width, 1)).round()
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
    if "shots" in scene:  # each frame shows its shot's framing of the set
      shot = np.searchsorted(np.asarray(scene["shots"]), t + 1e-6, side="right") - 1
      for j in np.unique(shot):
        frames[shot == j] = _framed(backgrounds[location["id"]], scene["cameras"][j])
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
  """Writes one planned title as an H.264 + AAC (or FLAC) file at `path`."""
  style = plan["style"]
  with media_writer.MediaWriter(path, width=options.width, height=options.height, fps=options.fps,
                   sample_rate=style["sample_rate"], channels=style["channels"],
                   crf=options.crf, preset=options.preset,
                   audio_codec=options.audio_codec) as writer:
    for frames, audio in render_chunks(plan, options):
      writer.write_frames(frames)
      writer.write_audio(audio)
