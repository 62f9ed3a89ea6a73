"""Ingest: long-form video files to per-title snippet records (paper Section 3, X_n).

A title n is cut into M_n = floor(duration / 3.2 s) non-overlapping snippets
x_{n,m} = (a_{n,m}, v_{n,m}); docs/data_format.md describes the output. Timestamps,
not frame counts, decide what goes where: the frame stored for target time t is the
last decoded frame with pts <= t, with targets t = t0 + i / fps from the first frame's
time t0; audio samples are placed at their own timestamps on the same time line.

`ingest_title` handles one file and is a pure function of its arguments (title file
in, record file + index + entry out), so a distributed runner can map it over titles.
`ingest` runs it over a folder or list of files, resumably: a title is finished when
its entry file `titles/<id>.json` exists (written last, after records and index), and
the manifest is rebuilt from the entry files on every run.
"""

import csv
import glob
import hashlib
import io
import math
import multiprocessing
import os
import signal
import time

from absl import logging
import av
import numpy as np
from PIL import Image
import tqdm

from avjax import fileio
from avjax.data import records

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts",
                    ".m2ts", ".mts", ".flv", ".wmv", ".ogv", ".3gp")
METADATA = "titles.csv"
# Top-level folders that hold movies, or that hold one folder per show.
MOVIE_FOLDERS = ("movies", "movie", "films", "film")
SHOW_FOLDERS = ("shows", "tv", "series", "tv shows", "tv_shows")

DEFAULT_PARAMS = dict(
    records.DEFAULT_PARAMS,
    val_fraction=0.1,
    shot_threshold=0.25,  # half-L1 distance of color histograms, in [0, 1]
    min_shot_seconds=0.5,
)

_EPS = 1e-6  # s; timestamps that differ by less are equal
_RESYNC_SECONDS = 0.01  # audio timestamp jumps larger than this are gaps or overlaps, not jitter
_PLANAR_YUV = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv411p",
               "yuv440p", "yuvj440p", "yuv410p")


class IngestError(Exception):
  """A title that cannot be ingested; the message says why."""


def make_params(**overrides):
  """Ingest params: DEFAULT_PARAMS with overrides, checked."""
  unknown = set(overrides) - set(DEFAULT_PARAMS)
  if unknown:
    raise ValueError(f"unknown ingest params {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
  params = dict(DEFAULT_PARAMS, **{k: v for k, v in overrides.items() if v is not None})
  samples = records.snippet_seconds(params) * params["sample_rate"]
  if abs(samples - round(samples)) > 1e-6:
    raise ValueError(f"a snippet of {records.snippet_seconds(params)} s is not a whole number of "
                     f"samples at {params['sample_rate']} Hz")
  if not 0 <= params["val_fraction"] <= 1:
    raise ValueError(f"val_fraction must be in [0, 1], got {params['val_fraction']}")
  if params["short_side"] < 2 or params["frames_per_snippet"] < 1 or params["fps"] <= 0:
    raise ValueError(f"bad ingest params {params}")
  return params


def split_of(title_meta, val_fraction):
  """'val' or 'train' by a hash of the title id, or of the show for episodes (paper Sec. 4.2)."""
  key = title_meta["show"] if title_meta["kind"] == "episode" else title_meta["id"]
  u = int.from_bytes(hashlib.sha256(f"avjax-split:{key}".encode()).digest()[:8], "big") / 2**64
  return "val" if u < val_fraction else "train"


def entry_path(dataset_dir, title_id):
  """The per-title entry file whose existence marks a finished title."""
  return os.path.join(dataset_dir, records.TITLES_DIR, f"{title_id}.json")


# ---------------------------------------------------------------------------
# Finding titles.


def _derive_meta(rel_parts):
  """Title id, kind and show from a path relative to the input root.

  Root-level files and files under a top-level `movies/` folder are movies; otherwise
  the first folder is the show (under an optional top-level `shows/` folder), and the
  folders in between (e.g. seasons) become part of the id.
  """
  stem = os.path.splitext(rel_parts[-1])[0]
  folders = list(rel_parts[:-1])
  if folders and folders[0].lower() in SHOW_FOLDERS and len(folders) > 1:
    folders = folders[1:]
  if not folders or folders[0].lower() in MOVIE_FOLDERS:
    return dict(id=records.safe_title_id(stem), kind="movie", show=None, genres=[])
  show = records.safe_title_id(folders[0])
  return dict(id=records.safe_title_id("_".join(folders + [stem])), kind="episode", show=show,
              genres=[])


def read_metadata(path):
  """titles.csv rows: title_id, and optional kind, show_id, genres ('|'-separated), path."""
  rows = []
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    if not reader.fieldnames or "title_id" not in reader.fieldnames:
      raise ValueError(f"{path}: needs a header with a title_id column "
                       "(and optionally kind, show_id, genres, path)")
    for line, row in enumerate(reader, start=2):
      tid = (row.get("title_id") or "").strip()
      if not tid or records.safe_title_id(tid) != tid:
        raise ValueError(f"{path} line {line}: title_id {tid!r} must be non-empty and use only "
                         "letters, digits, '.', '_' and '-'")
      show = (row.get("show_id") or "").strip() or None
      kind = (row.get("kind") or "").strip().lower() or ("episode" if show else "movie")
      if kind not in ("movie", "episode"):
        raise ValueError(f"{path} line {line}: kind {kind!r}, expected 'movie' or 'episode'")
      if kind == "episode" and not show:
        raise ValueError(f"{path} line {line}: episode {tid} has no show_id")
      genres = [g.strip() for g in (row.get("genres") or "").replace(";", "|").split("|")
                if g.strip()]
      rel = (row.get("path") or "").strip()
      rows.append(dict(id=tid, kind=kind, show=show if kind == "episode" else None,
                       genres=genres,
                       path=os.path.normpath(os.path.join(os.path.dirname(path), rel))
                       if rel else None))
  return rows


def discover(input_path, metadata=None):
  """Titles to ingest: a list of dicts with path, id, kind, show and genres, sorted by id.

  `input_path` is a folder (searched recursively for video files; a `titles.csv` at
  its top is used when `metadata` is not given), one video file, or a text file
  listing video paths (one per line, relative to the list's folder; '#' comments).
  """
  if os.path.isdir(input_path):
    root = input_path
    paths = []
    for folder, dirs, files in os.walk(input_path):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      paths += [os.path.join(folder, f) for f in sorted(files)
                if not f.startswith(".") and f.lower().endswith(VIDEO_EXTENSIONS)]
    if metadata is None and os.path.exists(os.path.join(root, METADATA)):
      metadata = os.path.join(root, METADATA)
  elif not os.path.exists(input_path):
    raise FileNotFoundError(f"--input {input_path!r} does not exist")
  elif input_path.lower().endswith(VIDEO_EXTENSIONS):
    root, paths = os.path.dirname(input_path), [input_path]
  else:
    root = os.path.dirname(input_path)
    with open(input_path, encoding="utf-8") as f:
      paths = [os.path.join(root, l.strip()) for l in f if l.strip() and not l.startswith("#")]
  rows = read_metadata(metadata) if metadata else []
  by_path = {os.path.abspath(r["path"]): r for r in rows if r["path"]}
  by_id = {r["id"]: r for r in rows if not r["path"]}
  titles, seen = [], {}
  for path in paths:
    rel = os.path.relpath(path, root or ".")
    parts = [os.path.basename(path)] if rel.startswith("..") else rel.split(os.sep)
    meta = _derive_meta(parts)
    row = by_path.get(os.path.abspath(path)) or by_id.get(meta["id"])
    if row:
      meta = {k: row[k] for k in ("id", "kind", "show", "genres")}
    if meta["id"] in seen:
      raise ValueError(f"{path} and {seen[meta['id']]} both make title id {meta['id']!r}; "
                       "give them distinct ids in a titles.csv (--metadata)")
    seen[meta["id"]] = path
    titles.append(dict(meta, path=path))
  return sorted(titles, key=lambda t: t["id"])


# ---------------------------------------------------------------------------
# One title.


def _histogram(frame):
  """Normalized 16-bin histograms of Y, U and V on a subsampled grid: [48]."""
  if frame.format.name not in _PLANAR_YUV:
    frame = frame.reformat(width=64, height=36, format="yuv420p")
  hists = []
  for plane in frame.planes[:3]:
    a = np.frombuffer(plane, np.uint8)[:plane.line_size * plane.height]
    a = a.reshape(plane.height, plane.line_size)[:, :plane.width]
    step = max(1, min(plane.height, plane.width) // 36)
    a = a[::step, ::step]
    hists.append(np.bincount((a >> 4).ravel(), minlength=16) / a.size)
  return np.concatenate(hists)


def detect_shots(times, scores, threshold, min_seconds):
  """Shot boundaries: frames whose change score exceeds `threshold`, at most one per min_seconds."""
  times, scores = np.asarray(times), np.asarray(scores)
  picked = []
  for i in np.argsort(-scores, kind="stable"):
    if scores[i] <= threshold:
      break
    if all(abs(times[i] - times[j]) >= min_seconds for j in picked):
      picked.append(i)
  return sorted(round(float(times[i]), 3) for i in picked)


class _Cutter:
  """Streams decoded frames and audio into snippets; writes each snippet once it is complete."""

  def __init__(self, title_id, params, writer, out_size):
    self.title_id = title_id
    self.writer = writer
    self.fps = params["fps"]
    self.T = params["frames_per_snippet"]
    self.rate = params["sample_rate"]
    self.S = records.samples_per_snippet(params)
    self.seconds = records.snippet_seconds(params)
    self.quality = params["jpeg_quality"]
    self.out_size = out_size  # (width, height)
    self.t0 = None
    # Video: the latest frame, its JPEG once made, and the JPEGs of the pending snippet.
    self.prev = None
    self.prev_time = None
    self.prev_jpeg = None
    self.prev_hist = None
    self.next_target = 0
    self.frames = []
    self.video_time = -math.inf
    self.shot_times, self.shot_scores = [], []
    # Audio: samples placed since t0 that are not in a written snippet yet.
    self.audio = []
    self.audio_buffered = 0
    self.audio_total = 0
    self.audio_pending = []  # before t0 is known
    self.written = 0

  def target(self, k):
    return self.t0 + k / self.fps

  def _jpeg(self):
    if self.prev_jpeg is None:
      w, h = self.out_size
      rgb = self.prev.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
      buf = io.BytesIO()
      Image.fromarray(rgb).save(buf, format="JPEG", quality=self.quality)
      self.prev_jpeg = buf.getvalue()
    return self.prev_jpeg

  def _emit_until(self, t):
    """The latest frame fills every target before time t."""
    while self.target(self.next_target) < t - _EPS:
      self.frames.append(self._jpeg())
      self.next_target += 1

  def video_frame(self, frame, time_s):
    if self.prev is None:
      self.t0 = time_s
      for pts, data in self.audio_pending:
        self._place_audio(pts, data)
      self.audio_pending = []
    else:
      if time_s <= self.prev_time + _EPS:
        return  # out of order or duplicate timestamp: the earlier frame stands
      self._emit_until(time_s)
    hist = _histogram(frame)
    if self.prev_hist is not None:
      self.shot_times.append(time_s - self.t0)
      self.shot_scores.append(0.5 * float(np.abs(hist - self.prev_hist).sum()) / 3)
    self.prev, self.prev_time, self.prev_jpeg, self.prev_hist = frame, time_s, None, hist
    self.video_time = time_s
    self._write_ready()

  def end_video(self, end_time):
    if self.prev is not None:
      self._emit_until(end_time)
      self.video_time = end_time
    self._write_ready()

  def audio_frame(self, time_s, data):
    if self.t0 is None:
      self.audio_pending.append((time_s, data))
    else:
      self._place_audio(time_s, data)
      self._write_ready()

  def _place_audio(self, time_s, data):
    """Places samples at their timestamp: gaps become silence, overlaps are dropped."""
    if time_s is not None:
      pos = int(round((time_s - self.t0) * self.rate))
      drift = pos - self.audio_total
      if self.audio_total == 0 or abs(drift) > _RESYNC_SECONDS * self.rate:
        if drift > 0:
          self._append(np.zeros(drift, np.int16))
        elif drift < 0:
          data = data[-drift:]
    if data.size:
      self._append(data)

  def _append(self, data):
    self.audio.append(data)
    self.audio_buffered += data.size
    self.audio_total += data.size

  def end_audio(self):
    self._write_ready()

  def _write_ready(self):
    while len(self.frames) >= self.T and self.audio_buffered >= self.S:
      span_end = self.t0 + (self.written + 1) * self.seconds
      if self.video_time < span_end - _EPS:
        return  # video may stop inside this span; then the snippet is not complete
      audio = np.concatenate(self.audio)
      self.audio = [audio[self.S:]]
      self.audio_buffered -= self.S
      self.writer.write(records.encode_snippet(
          self.title_id, self.written, round(self.written * self.seconds, 6),
          self.frames[:self.T], audio[:self.S]))
      self.frames = self.frames[self.T:]
      self.written += 1

  @property
  def audio_end(self):
    return self.t0 + self.audio_total / self.rate


def _out_size(stream, frame, short_side):
  """(width, height) with the shorter side `short_side`, keeping the display aspect ratio."""
  width = frame.width * float(stream.sample_aspect_ratio or 1)
  scale = short_side / min(width, frame.height)
  return max(2, int(round(width * scale))), max(2, int(round(frame.height * scale)))


def _pick_stream(streams):
  usable = [s for s in streams if not s.disposition & av.stream.Disposition.attached_pic]
  default = [s for s in usable if s.disposition & av.stream.Disposition.default]
  return (default or usable or [None])[0]


def _declared_end(container, stream):
  """Where the file says a stream ends (s), or None when it does not say."""
  if stream.duration is not None and stream.time_base is not None:
    return float((stream.start_time or 0) * stream.time_base + stream.duration * stream.time_base)
  if container.duration is not None:
    return (container.start_time or 0) / 1e6 + container.duration / 1e6
  return None


def _decode_into(container, video, audio, cutter, params):
  """Demuxes and decodes both streams into `cutter`; returns where each stream ended (s)."""
  resampler = av.AudioResampler(format="s16", layout="mono", rate=params["sample_rate"])
  last_time = None
  default_step = 1 / float(video.guessed_rate or video.average_rate or 25)
  where = 0.0

  def resampled(frames):
    for out in frames:
      cutter.audio_frame(out.time, out.to_ndarray().reshape(-1).astype(np.int16, copy=False))

  try:
    for packet in container.demux(video, audio):
      for frame in packet.decode():
        if packet.stream is video:
          t = frame.time
          if t is None:  # no timestamp (some AVI): assume the nominal frame rate
            t = last_time + default_step if last_time is not None else 0.0
          if cutter.out_size is None:
            cutter.out_size = _out_size(video, frame, params["short_side"])
          cutter.video_frame(frame, t)
          last_time = where = t
        else:
          resampled(resampler.resample(frame))
    resampled(resampler.resample(None))
  except av.error.FFmpegError as e:
    raise IngestError(f"decode error near {where:.1f} s: {e}") from e
  if cutter.prev is None:
    raise IngestError("no video frames could be decoded")
  frame, t = cutter.prev, cutter.prev_time
  step = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
  video_end = t + (step if step > 0 else default_step)
  cutter.end_video(video_end)
  cutter.end_audio()
  return video_end, cutter.audio_end


def ingest_title(path, dataset_dir, title_meta, params, *, threads=1):
  """Ingests one title file; returns its manifest entry.

  Writes `titles/<id>.tfrecord`, its index and the entry file `titles/<id>.json`,
  each atomically and in that order. Raises IngestError (and leaves nothing behind)
  when the file cannot be opened or decoded, has no audio or video, is truncated,
  or is shorter than one snippet.

  Args:
    path: video file.
    dataset_dir: output dataset directory.
    title_meta: dict with id, kind ("movie" or "episode"), show (None for movies), genres.
    params: ingest params (`make_params`).
    threads: decoder threads (1 for one core per title).
  """
  title_id = title_meta["id"]
  if os.path.isfile(path) and os.path.getsize(path) == 0:
    raise IngestError("empty file (0 bytes)")
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError) as e:
    raise IngestError(f"cannot open: {e}") from e
  with container:
    video = _pick_stream(container.streams.video)
    audio = _pick_stream(container.streams.audio)
    if video is None:
      raise IngestError("no video track")
    if audio is None:
      raise IngestError("no audio track")
    video.thread_type = "AUTO" if threads > 1 else "SLICE"
    video.codec_context.thread_count = threads
    with records.TitleWriter(dataset_dir, title_id) as writer:
      cutter = _Cutter(title_id, params, writer, None)
      video_end, audio_end = _decode_into(container, video, audio, cutter, params)
      # A file cut short mid-way may still decode cleanly up to the cut; its header knows better.
      for name, stream, end in (("video", video, video_end), ("audio", audio, audio_end)):
        declared = _declared_end(container, stream)
        if declared is not None and declared - end > max(1.0, 0.01 * declared):
          raise IngestError(f"truncated: {name} ends at {end:.1f} s, "
                            f"the file says {declared:.1f} s")
      duration = min(video_end, audio_end) - cutter.t0
      if not len(writer):
        raise IngestError(f"too short: {max(duration, 0):.2f} s with both audio and video, "
                          f"one snippet is {records.snippet_seconds(params)} s")
      expected = int((duration + _EPS) // records.snippet_seconds(params))
      if len(writer) != expected:
        raise IngestError(f"internal: {len(writer)} snippets written, {expected} expected "
                          f"for {duration:.3f} s")
  records_rel, index_rel = records.record_paths(dataset_dir, title_id)
  width, height = cutter.out_size
  entry = dict(
      id=title_id, kind=title_meta["kind"], show=title_meta["show"],
      genres=list(title_meta.get("genres") or []), duration=round(duration, 3),
      num_snippets=len(writer), split=split_of(title_meta, params["val_fraction"]),
      records=records_rel, index=index_rel, frame_size=[height, width],
      shots=detect_shots(cutter.shot_times, cutter.shot_scores, params["shot_threshold"],
                         params["min_shot_seconds"]),
      source=os.path.abspath(path))
  fileio.write_json(entry_path(dataset_dir, title_id), entry)
  return entry


# ---------------------------------------------------------------------------
# Many titles.


def finished_entries(dataset_dir):
  """Entries of finished titles: an entry file whose records and index exist."""
  entries = {}
  for path in sorted(glob.glob(os.path.join(dataset_dir, records.TITLES_DIR, "*.json"))):
    entry = fileio.read_json(path)
    if all(os.path.exists(os.path.join(dataset_dir, entry[k])) for k in ("records", "index")):
      entries[entry["id"]] = entry
  return entries


def build_manifest(dataset_dir, params):
  """Writes manifest.json from the finished titles' entry files; returns it."""
  entries = finished_entries(dataset_dir)
  titles = [entries[k] for k in sorted(entries)]
  manifest = dict(format_version=records.FORMAT_VERSION, params=params, titles=titles)
  records.write_manifest(dataset_dir, manifest)
  return manifest


def _remove_temporaries(dataset_dir):
  """Temporaries of an earlier, killed run (one ingest per dataset dir at a time)."""
  folder = os.path.join(dataset_dir, records.TITLES_DIR)
  for pattern in ("*.tmp", "*.tmp.npy"):
    for path in glob.glob(os.path.join(folder, pattern)):
      os.remove(path)


def _worker_init():
  # Ctrl-C goes to the parent, which stops the pool; finished titles are already on disk.
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ingest_one(args):
  """(title, entry or None, reason or None); bad input never raises."""
  title, dataset_dir, params, threads = args
  meta = {k: title[k] for k in ("id", "kind", "show", "genres")}
  try:
    return title, ingest_title(title["path"], dataset_dir, meta, params, threads=threads), None
  except IngestError as e:
    return title, None, str(e)
  except Exception as e:  # pylint: disable=broad-except
    return title, None, f"{type(e).__name__}: {e}"


def ingest(input_path, dataset_dir, *, metadata=None, workers=1, params=None, threads=None,
           progress=True):
  """Ingests every title under `input_path` not yet finished in `dataset_dir`.

  Returns the report that is also written to `DATASET_DIR/ingest_report.json`;
  its `failed` list names each skipped file and why.
  """
  params = make_params(**(params or {}))
  titles = discover(input_path, metadata)
  os.makedirs(os.path.join(dataset_dir, records.TITLES_DIR), exist_ok=True)
  if os.path.exists(records.manifest_path(dataset_dir)):
    old = fileio.read_json(records.manifest_path(dataset_dir)).get("params")
    if old != params:
      raise ValueError(f"{dataset_dir} was ingested with params {old}, this run has {params}; "
                       "use the same flags to resume, or a new --output")
  _remove_temporaries(dataset_dir)
  done = finished_entries(dataset_dir)
  todo = [t for t in titles if t["id"] not in done]
  build_manifest(dataset_dir, params)
  workers = max(1, min(workers, len(todo)))
  threads = threads or max(1, (os.cpu_count() or 1) // workers)
  report = dict(input=os.path.abspath(input_path), titles=len(titles),
                already_done=len(titles) - len(todo), ingested=0, snippets=0, hours=0.0,
                failed=[], interrupted=False)
  logging.info("%d titles, %d already done, %d to ingest with %d worker(s)", len(titles),
               report["already_done"], len(todo), workers)
  total_bytes = sum(os.path.getsize(t["path"]) if os.path.isfile(t["path"]) else 0 for t in todo)
  bar = tqdm.tqdm(total=total_bytes, unit="B", unit_scale=True, desc="ingest",
                  disable=not progress or not todo, smoothing=0.1)
  jobs = [(t, dataset_dir, params, threads) for t in todo]
  pool = None
  last_manifest = time.time()
  try:
    if workers == 1:
      results = map(_ingest_one, jobs)
    else:
      # Spawn, not fork: the parent has TensorFlow loaded, which does not survive a fork.
      pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init)
      results = pool.imap_unordered(_ingest_one, jobs)
    for i, (title, entry, reason) in enumerate(results):
      bar.update(os.path.getsize(title["path"]) if os.path.isfile(title["path"]) else 0)
      if entry is None:
        report["failed"].append(dict(title_id=title["id"], path=title["path"], reason=reason))
        logging.warning("skipped %s (%s): %s", title["path"], title["id"], reason)
      else:
        report["ingested"] += 1
        report["snippets"] += entry["num_snippets"]
        report["hours"] += entry["duration"] / 3600
      bar.set_postfix_str(f"titles {i + 1}/{len(todo)}, {report['snippets']} snippets, "
                          f"{report['hours']:.2f} h, {len(report['failed'])} failed")
      if time.time() - last_manifest > 30:  # entry files are the truth; this is a courtesy
        build_manifest(dataset_dir, params)
        last_manifest = time.time()
    if pool is not None:
      pool.close()
  except KeyboardInterrupt:
    report["interrupted"] = True
    raise
  finally:
    bar.close()
    if pool is not None:
      pool.terminate()  # a no-op after close(); stops workers mid-title after an interrupt
      pool.join()
    build_manifest(dataset_dir, params)
    report["hours"] = round(report["hours"], 4)
    report["failed"].sort(key=lambda f: f["title_id"])
    fileio.write_json(os.path.join(dataset_dir, records.REPORT), report)
  return report
