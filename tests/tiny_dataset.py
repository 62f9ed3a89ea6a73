"""Tiny snippet datasets for tests: small frames, few titles, written straight as records."""

from avjax.data import fake


def make_tiny_dataset(path, titles=None, *, movies=4, shows=2, episodes_per_show=2,
                      snippets_per_title=(6, 9, 12), val_movies=1, val_shows=1,
                      short_side=40, aspect=1.4, frames_per_snippet=4, fps=5.0,
                      sample_rate=48000, genres=fake.GENRES, seed=0, corrupt=None):
  """Writes a tiny dataset at `path` and returns its manifest.

  By default: `movies` movies and `shows` shows of `episodes_per_show` episodes, with
  6, 9, 12, ... snippets in turn; the last movie and the last show are in split "val".
  Frames are short_side x round(short_side * aspect) JPEGs (40x56), 4 per snippet at 5 fps
  (0.8 s, 38,400 samples of 48 kHz audio). Pass `titles` (list of dicts with id,
  num_snippets and optionally kind, show, genres, split) for full control, and `corrupt`
  ({(title_id, snippet): "jpeg" | "audio_length" | "frame_count"}) for bad records.
  """
  if titles is None:
    titles = fake.title_specs(movies=movies, shows=shows, episodes_per_show=episodes_per_show,
                              snippets_per_title=snippets_per_title, val_movies=val_movies,
                              val_shows=val_shows, genres=genres, seed=seed)
  return fake.make_fake_dataset(path, titles, short_side=short_side, aspect=aspect,
                                frames_per_snippet=frames_per_snippet, fps=fps,
                                sample_rate=sample_rate, seed=seed, corrupt=corrupt)


def tiny_data_config(path, **overrides):
  """A data config for a tiny dataset: 4 frames, 40 -> 32 crops, k = 2."""
  from avjax.data import config as data_config  # pylint: disable=g-import-not-at-top
  config = data_config.default_config()
  config.dataset = [str(path)]
  config.k = 2
  config.num_frames = 4
  config.short_side = 40
  config.crop_size = 32
  for key, value in overrides.items():
    config[key] = value
  return config


def make_synthetic_dataset(root, preset="mini", *, seed=0, **sizes):
  """A synthetic preset (avjax/ingest/synthetic_presets.py) rendered into ROOT/synthetic and
  ingested into ROOT/dataset with the flags it is made for; returns the dataset's path.
  `sizes` override the preset's (movies, shows, episodes, minutes) or Options fields."""
  # pylint: disable=g-import-not-at-top
  from avjax.ingest import run as ingest_run
  from avjax.ingest import synthetic
  from avjax.ingest import synthetic_presets
  collection = synthetic_presets.preset(preset, **sizes)
  made_for = collection.pop("ingest")
  synthetic.generate(f"{root}/synthetic", seed=seed, progress=False, **collection)
  ingest_run.ingest(f"{root}/synthetic", f"{root}/dataset", params=made_for, workers=1,
                    progress=False)
  return f"{root}/dataset"
