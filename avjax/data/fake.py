"""Generated snippet datasets in the on-disk format of `records` (tests and benchmarks).

Writes titles directly as records (no video files, no ingest): each snippet has JPEG frames
of a smooth, moving, lightly textured picture (so JPEG sizes and decode costs resemble real
frames rather than noise) and int16 audio of a few tones over noise. Content is a pure
function of (seed, title, snippet), so datasets are reproducible.

`corrupt` damages chosen snippets, to exercise the pipeline's bad-record handling:
  "jpeg"          frame 0 truncated to half its bytes
  "audio_length"  audio one hop (512 samples) short
  "frame_count"   the last frame missing
"""

import os

import numpy as np
import tensorflow as tf

from avjax.data import example
from avjax.data import records

GENRES = ("Drama", "Comedy", "Action", "Horror", "Thriller", "Sci-Fi", "Romance")
CORRUPTIONS = ("jpeg", "audio_length", "frame_count")


def title_specs(movies=4, shows=0, episodes_per_show=2, snippets_per_title=8, val_movies=1,
                val_shows=0, genres=GENRES, seed=0):
  """Title specs: `movies` movies and `shows` shows of `episodes_per_show` episodes.

  The last `val_movies` movies and the last `val_shows` shows (all of their episodes, as in
  the paper's held-out split) are in split "val", the rest in "train". Genres cycle over
  `genres`, one or two per title (a show's episodes share its genres). `snippets_per_title`
  is an int, or a sequence used cyclically.
  """
  rng = np.random.default_rng([seed, 7])
  counts = np.atleast_1d(np.asarray(snippets_per_title, np.int64))
  specs = []

  def pick_genres(i):
    g = [genres[i % len(genres)]]
    if len(genres) > 1 and rng.random() < 0.5:
      g.append(genres[(i + 1 + int(rng.integers(len(genres) - 1))) % len(genres)])
    return g

  for i in range(movies):
    specs.append(dict(id=f"movie_{i:03d}", kind="movie", show=None, genres=pick_genres(i),
                      split="val" if i >= movies - val_movies else "train"))
  for s in range(shows):
    g = pick_genres(movies + s)
    for e in range(episodes_per_show):
      specs.append(dict(id=f"show_{s:02d}_e{e:02d}", kind="episode", show=f"show_{s:02d}",
                        genres=list(g), split="val" if s >= shows - val_shows else "train"))
  for i, spec in enumerate(specs):
    spec["num_snippets"] = int(counts[i % len(counts)])
  return specs


def make_fake_dataset(path, titles=None, *, short_side=48, aspect=4 / 3,
                      frames_per_snippet=16, fps=5.0, sample_rate=48000, jpeg_quality=90,
                      seed=0, corrupt=None, **spec_kwargs):
  """Writes a dataset directory and returns its manifest.

  Args:
    path: output directory (created).
    titles: list of title specs (dicts with id, num_snippets and optionally kind, show,
      genres, split), or None for `title_specs(**spec_kwargs)`.
    short_side: stored frame height (frames are landscape: width = round(short_side *
      aspect)).
    frames_per_snippet, fps, sample_rate: snippet format; audio has
      frames_per_snippet / fps * sample_rate samples.
    corrupt: {(title_id, snippet_index): one of CORRUPTIONS}.
  """
  if titles is None:
    titles = title_specs(seed=seed, **spec_kwargs)
  elif spec_kwargs:
    raise TypeError(f"unexpected arguments with explicit titles: {sorted(spec_kwargs)}")
  corrupt = dict(corrupt or {})
  for key, kind in corrupt.items():
    if kind not in CORRUPTIONS:
      raise ValueError(f"corrupt[{key}]={kind!r}: expected one of {CORRUPTIONS}")
  params = dict(records.DEFAULT_PARAMS, fps=float(fps), frames_per_snippet=int(frames_per_snippet),
                short_side=int(short_side), sample_rate=int(sample_rate),
                jpeg_quality=int(jpeg_quality))
  seconds = records.snippet_seconds(params)
  num_samples = records.samples_per_snippet(params)
  height, width = int(short_side), int(round(short_side * aspect))
  os.makedirs(path, exist_ok=True)
  entries = []
  for t, spec in enumerate(titles):
    tid = spec["id"]
    m_n = int(spec["num_snippets"])
    with records.TitleWriter(path, tid) as writer:
      for m in range(m_n):
        rng = np.random.default_rng([seed, t, m])
        frames = _frames(rng, t, m, frames_per_snippet, height, width, jpeg_quality)
        pcm = _audio(rng, num_samples, sample_rate)
        kind = corrupt.get((tid, m))
        if kind == "jpeg":
          frames[0] = frames[0][:len(frames[0]) // 2]
        elif kind == "audio_length":
          pcm = pcm[:-512]
        elif kind == "frame_count":
          frames = frames[:-1]
        writer.write(example.encode_snippet(tid, m, m * seconds, frames, pcm))
    rec, idx = records.record_paths(path, tid)
    entries.append(dict(id=tid, kind=spec.get("kind", "movie"), show=spec.get("show"),
                        genres=list(spec.get("genres", [])), duration=m_n * seconds,
                        num_snippets=m_n, split=spec.get("split", "train"), records=rec,
                        index=idx))
  manifest = dict(format_version=records.FORMAT_VERSION, params=params, titles=entries)
  records.write_manifest(path, manifest)
  return manifest


def _frames(rng, t, m, count, height, width, quality):
  """JPEG frames of a smooth colour field drifting over time, with mild texture."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  base = rng.uniform(0, 1, size=(3, 3)).astype(np.float32)  # per-channel phase, frequency
  tint = np.float32(40 + 12 * (t % 7))  # a per-title palette, like a film's look
  noise = rng.normal(0, 6, size=(height, width, 3)).astype(np.float32)
  out = []
  for f in range(count):
    shift = 2.0 * f + 0.5 * m
    chans = [
        128 + 80 * np.sin((xx + shift) * (0.02 + 0.05 * base[c, 1]) + 6.28 * base[c, 0])
        * np.cos((yy - shift) * (0.02 + 0.04 * base[c, 2])) + (tint if c == t % 3 else 0)
        for c in range(3)
    ]
    img = np.clip(np.stack(chans, -1) + noise, 0, 255).astype(np.uint8)
    out.append(tf.io.encode_jpeg(img, quality=quality).numpy())
  return out


def _audio(rng, num_samples, sample_rate):
  """int16 mono: two or three tones plus noise at about -20 dBFS."""
  t = np.arange(num_samples) / sample_rate
  x = 0.02 * rng.standard_normal(num_samples)
  for _ in range(int(rng.integers(2, 4))):
    x += 0.05 * np.sin(2 * np.pi * rng.uniform(80, 8000) * t + rng.uniform(0, 6.28))
  return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)
