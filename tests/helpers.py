"""Helpers the tests share: tiny datasets, downstream layouts, clock videos, a numpy log-mel,
chi-square, the package's imports as its source states them, and the shipped configs.

Tiny snippet datasets are written straight as records; the downstream datasets and the
clock videos are real media files (PyAV). tests/conftest.py makes the ones many test files
read once per test session.
"""

import ast
import collections
import io
import math
import os
import sys
import wave

import av
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from avjax import config_args
from avjax import console
from avjax.data import config as data_config
from avjax.data import fake
from avjax.media import writer as media_writer

# ---------------------------------------------------------------------------
# Tiny snippet datasets.


# The wide tiny dataset's sizes (conftest.wide_tiny_dataset): 9 training titles.
WIDE = dict(movies=6, shows=3)


def command_env(**extra):
  """The environment of a command run by hand: one CPU device (tests simulate 8), the
  console as a user sees it (none of the test run's log file or verbosity), this Python's
  folder first on PATH (for launch/*.sh); `extra` on top."""
  env = {k: v for k, v in os.environ.items()
         if k not in (console.LOG_FILE_ENV, console.VERBOSITY_ENV)}
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "").strip()
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
  env.update(extra)
  return env


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
  """A synthetic preset (avjax/synthetic/presets.py) rendered into ROOT/synthetic and
  ingested into ROOT/dataset with the flags it is made for; returns the dataset's path.
  `sizes` override the preset's (movies, shows, episodes, minutes) or Options fields."""
  # pylint: disable=g-import-not-at-top
  from avjax.ingest import run as ingest_run
  from avjax.synthetic import generator as synthetic
  from avjax.synthetic import presets as synthetic_presets
  collection = synthetic_presets.preset(preset, **sizes)
  made_for = collection.pop("ingest")
  synthetic.generate(f"{root}/synthetic", seed=seed, progress=False, **collection)
  ingest_run.ingest(f"{root}/synthetic", f"{root}/dataset", params=made_for, workers=1,
                    progress=False)
  return f"{root}/dataset"


# ---------------------------------------------------------------------------
# A toy task: the loop's machinery without a model or TensorFlow.


def toy_config(**overrides):
  """The toy task's run config: 6 steps of batch 8, checkpoints every 2."""
  config = ml_collections.ConfigDict(dict(
      seed=0, batch_size=8, total_steps=6, num_epochs=1, log_every_steps=1,
      checkpoint_every_steps=2, keep_checkpoints=10, keep_every_steps=0, resume="guard",
      data=dict(k=1, w=-1, dataset="/data/a"), model=dict(width=3),
      optimizer=dict(lr_init=0.0, lr_peak=0.1, lr_end=0.0, grad_clip_norm=0.0)))
  config.update_from_flattened_dict(overrides)
  return config


def toy_task(starts, fetch=None, fingerprint=None):
  """build_task of a one-vector model; records each start step in `starts`, and calls
  `fetch(i)` when the loop fetches its i-th batch (i = 1, 2, ...) if given; `fingerprint`:
  the identity of its (pretended) data."""
  from avjax import loop  # pylint: disable=g-import-not-at-top
  def build(config, workdir, *, start_step, writer, mesh):
    del workdir, writer, mesh
    starts.append(start_step)
    width = config.model.width

    def init(rng):
      return dict(step=jnp.zeros((), jnp.int32), params=dict(w=jnp.zeros(width)),
                  rng=jax.random.key_data(rng))

    def update(state, batch):
      w = state["params"]["w"] + batch["x"].mean()
      norm = jnp.sqrt(jnp.sum(w ** 2))
      return (dict(state, step=state["step"] + 1, params=dict(w=w)),
              dict(loss=norm, learning_rate=jnp.float32(0.1), grad_norm=norm, param_norm=norm))
    batch = dict(x=np.ones((config.batch_size, 1), np.float32))
    fetched = iter(range(1, 1 << 30))

    def next_batch():
      i = next(fetched)
      if fetch is not None:
        fetch(i)
      return batch
    return loop.Task(train_iter=iter(next_batch, None), first_batch=batch,
                     num_steps=config.total_steps, init=init, update=update,
                     describe=lambda m: f"loss {m['loss']:.3f}",
                     meta=lambda step: dict(step=int(step)), finish=lambda state, step: state,
                     counters=lambda: dict(skipped_records=3), fingerprint=fingerprint)
  return build


# ---------------------------------------------------------------------------
# Downstream datasets in their standard layouts (UCF101, HMDB51, ESC-50).

FPS = 25
SIZE = (32, 40)  # (height, width)


def write_video(path, *, seconds=2.0, fps=FPS, size=SIZE, seed=0, levels=None, codec="mpeg4"):
  """An AVI (MPEG-4 by default); frame i is a flat grey of `levels[i]` if given, else a
  moving bar."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  base = rng.integers(40, 200, 3).astype(np.uint8)
  with av.open(path, "w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    for i in range(int(round(seconds * fps))):
      if levels is not None:
        img = np.full(size + (3,), levels[i], np.uint8)
      else:
        img = np.broadcast_to(base, size + (3,)).copy()
        img[:, : (3 * i) % size[1]] = 255 - base
      for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def write_wav(path, *, seconds=1.0, rate=44100, freq=440.0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  t = np.arange(int(seconds * rate)) / rate
  pcm = (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
  with wave.open(path, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(pcm.tobytes())


UCF_CLASSES = ("ApplyEyeMakeup", "HandstandPushups")


def make_ucf101(root, clips_per_class=3):
  """UCF101 layout; split s tests on the s-th clip of each class. File names of the second
  class spell it "HandStandPushups", as in the real dataset."""
  lists = os.path.join(root, "ucfTrainTestlist")
  os.makedirs(lists, exist_ok=True)
  with open(os.path.join(lists, "classInd.txt"), "w", newline="") as f:
    f.writelines(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES))
  files = {c: [f"v_{c.replace('Handstand', 'HandStand')}_g{g:02d}_c01.avi"
               for g in range(1, clips_per_class + 1)] for c in UCF_CLASSES}
  for i, c in enumerate(UCF_CLASSES):
    for j, name in enumerate(files[c]):
      write_video(os.path.join(root, "UCF-101", c, name), seed=10 * i + j)
  for s in (1, 2, 3):
    with open(os.path.join(lists, f"trainlist0{s}.txt"), "w", newline="") as train, \
         open(os.path.join(lists, f"testlist0{s}.txt"), "w", newline="") as test:
      for i, c in enumerate(UCF_CLASSES):
        for j, name in enumerate(files[c]):
          if j == s - 1:
            test.write(f"{c}/{name}\r\n")
          else:
            train.write(f"{c}/{name} {i + 1}\r\n")
  return root


HMDB_CLASSES = ("brush_hair", "cartwheel")


def make_hmdb51(root, clips_per_class=3):
  """HMDB51 layout; in split s the s-th clip is test (2), the others train (1)."""
  split_dir = os.path.join(root, "testTrainMulti_7030_splits")
  os.makedirs(split_dir, exist_ok=True)
  for i, c in enumerate(HMDB_CLASSES):
    names = [f"{c}_clip{j}.avi" for j in range(clips_per_class)]
    for j, name in enumerate(names):
      write_video(os.path.join(root, c, name), fps=30, seed=100 + 10 * i + j)
    for s in (1, 2, 3):
      with open(os.path.join(split_dir, f"{c}_test_split{s}.txt"), "w") as f:
        f.writelines(f"{name} {2 if j == s - 1 else 1} \n" for j, name in enumerate(names))
  return root


ESC_CLASSES = ("dog", "rain")


def make_esc50(root, seconds=1.0):
  """ESC-50 layout: per class one clip in each of the 5 folds (class 0 at 440 Hz, 1 at 2 kHz)."""
  meta = os.path.join(root, "meta")
  os.makedirs(meta, exist_ok=True)
  rows = ["filename,fold,target,category,esc10,src_file,take"]
  for target, category in enumerate(ESC_CLASSES):
    for fold in range(1, 6):
      name = f"{fold}-{1000 + target}-A-{target}.wav"
      write_wav(os.path.join(root, "audio", name), seconds=seconds,
                freq=440.0 if target == 0 else 2000.0)
      rows.append(f"{name},{fold},{target},{category},False,{1000 + target},A")
  with open(os.path.join(meta, "esc50.csv"), "w") as f:
    f.write("\n".join(rows) + "\n")
  return root


# ---------------------------------------------------------------------------
# Clock videos: frames that show their index, audio bursts at known times.

H, W = 64, 96
BITS = 10
BURSTS = 0.5  # s between audio bursts, starting at 0.25 s


def clock_frame(i):
  """Frame i shows i in binary as white bars, which survive H.264 and JPEG."""
  img = np.zeros((H, W, 3), np.uint8)
  for b in range(BITS):
    if i >> b & 1:
      img[:, 3 + 9 * b:12 + 9 * b] = 255
  return img


def read_clock(jpeg):
  img = np.asarray(Image.open(io.BytesIO(jpeg)))
  return sum(int(img[H // 2, 7 + 9 * b, 0] > 128) << b for b in range(BITS))


def burst_times(seconds):
  return np.arange(0.25, seconds - 0.1, BURSTS)


def bursts(seconds, rate):
  """10-ms 2-kHz tone bursts centered at burst_times."""
  x = np.zeros(int(round(seconds * rate)), np.float32)
  n = int(0.01 * rate)
  burst = 0.8 * np.hanning(n) * np.sin(2 * np.pi * 2000 * np.arange(n) / rate)
  for t in burst_times(seconds):
    s = int(round(t * rate)) - n // 2
    x[s:s + n] += burst
  return x


def write_clock(path, *, seconds, fps=None, times=None, rate=48000, channels=2, **kw):
  """A video whose frames encode their index and whose audio has bursts at known times."""
  vfr = times is not None
  if not vfr:
    times = np.arange(int(round(seconds * float(fps)))) / float(fps)
  with media_writer.MediaWriter(path, width=W, height=H, fps=fps or 30, sample_rate=rate,
                             channels=channels, vfr=vfr, **kw) as w:
    w.write_frames(np.stack([clock_frame(i) for i in range(len(times))]),
                   times=times if vfr else None)
    if channels:
      w.write_audio(np.stack([bursts(seconds, rate)] * channels))
  return np.asarray(times, np.float64)


# ---------------------------------------------------------------------------
# The log-mel definition of avjax.data.audio in float64 numpy: the reference of its TF op.


def mel_weights_numpy(mel_bins=data_config.MEL_BINS, n_fft=data_config.N_FFT,
                      sample_rate=data_config.SAMPLE_RATE, mel_lower_hz=data_config.MEL_LOWER_HZ,
                      mel_upper_hz=data_config.MEL_UPPER_HZ):
  """[n_fft/2 + 1, mel_bins] triangular HTK-mel filters, peak 1, zero DC row."""
  def hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)
  bins_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
  bins_mel = hz_to_mel(bins_hz)[:, None]
  edges = np.linspace(hz_to_mel(mel_lower_hz), hz_to_mel(mel_upper_hz), mel_bins + 2)
  lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
  rising = (bins_mel - lower) / (center - lower)
  falling = (upper - bins_mel) / (upper - center)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  weights[0] = 0.0
  return weights


def log_mel_numpy(pcm, *, sample_rate=data_config.SAMPLE_RATE, n_fft=data_config.N_FFT,
                  hop=data_config.HOP, mel_bins=data_config.MEL_BINS,
                  mel_lower_hz=data_config.MEL_LOWER_HZ, mel_upper_hz=data_config.MEL_UPPER_HZ,
                  log_floor=data_config.LOG_FLOOR, mean=data_config.MEL_MEAN,
                  std=data_config.MEL_STD):
  """audio.log_mel_spectrogram of one 1-D signal: [mel, frames, 1]."""
  pcm = np.asarray(pcm)
  x = pcm / 32768.0 if pcm.dtype == np.int16 else pcm.astype(np.float64)
  frames = -(-len(x) // hop)  # audio.num_frames: the end zero-padded
  padded = np.zeros((frames - 1) * hop + n_fft)
  padded[:len(x)] = x
  idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
  power = np.abs(np.fft.rfft(padded[idx] * window, n=n_fft)) ** 2
  mel = power @ mel_weights_numpy(mel_bins, n_fft, sample_rate, mel_lower_hz, mel_upper_hz)
  return ((np.log(mel + log_floor) - mean) / std).T[..., None]


# ---------------------------------------------------------------------------
# Goodness of fit.


def chi2(observed, expected):
  observed = np.asarray(observed, np.float64)
  expected = np.asarray(expected, np.float64)
  return float(((observed - expected) ** 2 / expected).sum())


def chi2_bound(dof):
  # Mean dof, sd sqrt(2 dof): 6 sd is far beyond chance for a fixed seed, yet catches any
  # real bias at these sample sizes.
  return dof + 6 * math.sqrt(2 * dof)


# ---------------------------------------------------------------------------
# The shipped downstream configs, read as python -m avjax.finetune_all reads them.


def downstream_config(dataset, arg=""):
  """The run config of configs/downstream/<dataset>.py:ARGS (python -m avjax.finetune_all's)."""
  return config_args.load_config(f"configs/downstream/{dataset}.py:{arg}")


# ---------------------------------------------------------------------------
# The package's imports, read from its source with `ast` (tests/test_layout.py).

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "avjax")


def _modules():
  """{module name: path} of every .py file of the package."""
  out = {}
  for folder, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        out[".".join(parts)] = path
  return out


MODULES = _modules()
Import = collections.namedtuple("Import", "target line local optional")


def _catches_import_error(handler):
  names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
  return any(getattr(n, "id", "") in ("ImportError", "ModuleNotFoundError") for n in names)


def _target(name):
  """An imported name -> the avjax module it loads (or the name itself if not avjax)."""
  while name.startswith("avjax") and name not in MODULES and "." in name:
    name = name.rsplit(".", 1)[0]
  return name


def imports_of(module):
  """[Import(imported module, line, function-local?, optional?)] of `module`, every nesting
  level; an import is optional inside a `try` that catches ImportError."""
  path = MODULES[module]
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  found = []

  def visit(node, local, optional=False):
    for child in ast.iter_child_nodes(node):
      inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
      if isinstance(child, ast.Try) and any(_catches_import_error(h) for h in child.handlers):
        for stmt in child.body:
          visit(ast.Module(body=[stmt], type_ignores=[]), inner, True)
        for part in child.handlers + child.orelse + child.finalbody:
          visit(ast.Module(body=[part], type_ignores=[]), inner, optional)
        continue
      if isinstance(child, ast.Import):
        found.extend(Import(_target(a.name), child.lineno, local, optional)
                     for a in child.names)
      elif isinstance(child, ast.ImportFrom):
        base = child.module or ""
        if child.level:
          base = ".".join(package.split(".")[:len(package.split(".")) - child.level + 1]
                          + ([base] if base else []))
        for a in child.names:  # `from avjax.x import y` loads avjax.x.y when it is a module
          full = f"{base}.{a.name}"
          found.append(Import(_target(full if full in MODULES else base), child.lineno, local,
                              optional))
      elif isinstance(child, ast.Call):
        f = child.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        if name in ("import_module", "__import__") and child.args and isinstance(
            child.args[0], ast.Constant) and isinstance(child.args[0].value, str):
          found.append(Import(_target(child.args[0].value), child.lineno, local, optional))
        elif name in ("import_module", "__import__"):
          found.append(Import("<dynamic>", child.lineno, local, optional))
      visit(child, inner, optional)
  visit(tree, False)
  return found
