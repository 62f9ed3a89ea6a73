"""The snippet dataset on disk: manifest, per-title TFRecord files and their offset index.

Layout of a dataset directory (docs/data_format.md has the full description):

  DATASET_DIR/manifest.json               format version, ingest params, one entry per title
  DATASET_DIR/titles/<title>.tfrecord     one tf.train.Example per snippet, in snippet order
  DATASET_DIR/titles/<title>.index.npy    int64 [M, 2]: byte offset and length of each record
  DATASET_DIR/ingest_report.json          what ingest skipped, and why

A snippet is one serialized tf.train.Example (avjax.data.example has its fields). This
module reads and writes the files themselves (TFRecord framing, offsets, manifest) and
needs no TensorFlow, so ingest workers and tools can use it anywhere. The readers and the
manifest go through avjax.storage, so a dataset may be on a bucket (gs://, s3://);
TitleWriter writes local disk (the Beam ingest copies finished titles to the bucket).
"""

import collections
import hashlib
import io
import os
import re
import struct
import threading
import unicodedata

import google_crc32c
import numpy as np

from avjax import storage

# Version 2 adds each title's per-snippet shot and scene ids (snippet_shots,
# snippet_scenes) to its manifest entry; records are the same bytes in both. Both read: a
# version-1 title has no scene ids (python -m avjax.ingest.add_scenes adds them).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SCENE_KEYS = ("snippet_shots", "snippet_scenes")
MANIFEST = "manifest.json"
REPORT = "ingest_report.json"
TITLES_DIR = "titles"

# TFRecord framing: uint64 length, uint32 masked CRC of length, data, uint32 masked CRC of data.
_HEADER = 12
_FOOTER = 4
FRAMING_BYTES = _HEADER + _FOOTER

DEFAULT_PARAMS = dict(
    fps=5.0,
    frames_per_snippet=16,
    short_side=190,
    sample_rate=48000,
    jpeg_quality=90,
)

_TITLE_KEYS = ("id", "kind", "show", "genres", "duration", "num_snippets", "split",
               "records", "index")


def snippet_seconds(params):
  return params["frames_per_snippet"] / params["fps"]


def samples_per_snippet(params):
  """Audio samples per snippet: 3.2 s at 48 kHz = 153,600."""
  return int(round(snippet_seconds(params) * params["sample_rate"]))


def ascii_title_id(name):
  """`name` with runs of characters other than ASCII letters, digits, '.', '_' and '-'
  replaced by '_' (and '.' and '_' stripped at the ends); may be empty."""
  return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")


def unicode_title_id(name):
  """A title id that keeps Unicode letters and digits (NFC), or a short hash of `name`
  when it has none (e.g. only punctuation or symbols)."""
  name = unicodedata.normalize("NFC", name)
  tid = re.sub(r"[^\w.-]+", "_", name).strip("._")
  return tid or "title_" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]


def is_title_id(text):
  """Whether `text` can be a title id as it is (letters of any script, digits, '.', '_'
  and '-'; no '.' or '_' at the ends; NFC)."""
  return bool(text) and unicode_title_id(text) == text


def safe_title_id(name):
  """A title id usable as a file name, for any name.

  Names with ASCII letters or digits give the same ids as ever (ascii_title_id: the
  held-out split hashes ids, so they must not change); others, such as 'Сталкер', keep
  their Unicode letters, and names with no letter or digit at all get a short hash.
  """
  return ascii_title_id(name) or unicode_title_id(name)


def record_paths(dataset_dir, title_id):
  """(records, index) paths of a title, relative to the dataset dir."""
  return (f"{TITLES_DIR}/{title_id}.tfrecord", f"{TITLES_DIR}/{title_id}.index.npy")


# ---------------------------------------------------------------------------
# TFRecord framing.


def crc_implementation():
  """'c' when google_crc32c uses its C extension (fast), else 'python'."""
  return google_crc32c.implementation


def masked_crc(data):
  """The CRC32C of `data`, masked as TFRecord files store it."""
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data):
  """One TFRecord: uint64 length, masked CRC of the length, data, masked CRC of the data."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc(length)) + data
          + struct.pack("<I", masked_crc(data)))


# ---------------------------------------------------------------------------
# Writing.


class TitleWriter:
  """Writes one title's records and offset index, atomically.

  Records go to temporary files that are renamed onto their final names only in
  `close()`; `abort()` (or an exception inside a `with` block) removes them, so a
  title that fails mid-way leaves nothing partial behind.
  """

  def __init__(self, dataset_dir, title_id):
    self.title_id = title_id
    rec, idx = record_paths(dataset_dir, title_id)
    self.records_path = os.path.join(dataset_dir, rec)
    self.index_path = os.path.join(dataset_dir, idx)
    os.makedirs(os.path.dirname(self.records_path), exist_ok=True)
    self._tmp_records = f"{self.records_path}.{os.getpid()}.tmp"
    self._tmp_index = f"{self.index_path}.{os.getpid()}.tmp.npy"
    self._file = open(self._tmp_records, "wb")  # pylint: disable=consider-using-with
    self._offsets = []
    self._pos = 0

  def write(self, serialized):
    self._file.write(frame_record(serialized))
    self._offsets.append((self._pos, len(serialized)))
    self._pos += _HEADER + len(serialized) + _FOOTER

  def __len__(self):
    return len(self._offsets)

  def close(self):
    self._file.close()
    if os.path.getsize(self._tmp_records) != self._pos:
      self.abort()
      raise IOError(f"{self.records_path}: record sizes do not add up (writer framing changed?)")
    np.save(self._tmp_index, np.asarray(self._offsets, np.int64).reshape(-1, 2))
    # Index first, records last: a title is complete exactly when its records file exists.
    os.replace(self._tmp_index, self.index_path)
    os.replace(self._tmp_records, self.records_path)

  def abort(self):
    self._file.close()
    for p in (self._tmp_records, self._tmp_index):
      if os.path.exists(p):
        os.remove(p)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    if exc_type is None:
      self.close()
    else:
      self.abort()


# ---------------------------------------------------------------------------
# Reading.


def load_index(path):
  with storage.open(path, "rb") as f:  # a local path or a bucket (gs://, s3://)
    index = np.load(io.BytesIO(f.read()))
  if index.ndim != 2 or index.shape[1] != 2 or index.dtype != np.int64:
    raise ValueError(f"{path}: expected an int64 [M, 2] offset index, got {index.dtype} {index.shape}")
  return index


class CorruptRecordError(IOError):
  """A record whose TFRecord framing (length or CRC32C) does not check out."""


def read_record(f, offset, length, *, path="<records>", verify=True):
  """Reads one serialized record at `offset` from an open binary file (random access).

  With `verify`, the masked CRC32C of the length and of the data (the TFRecord framing)
  are checked: a flipped byte anywhere in the record raises CorruptRecordError.
  """
  f.seek(int(offset))
  header = f.read(_HEADER)
  if len(header) != _HEADER:
    raise CorruptRecordError(f"{path}: truncated record header at byte {offset}")
  (stored,) = struct.unpack("<Q", header[:8])
  if verify and struct.unpack("<I", header[8:])[0] != masked_crc(header[:8]):
    raise CorruptRecordError(f"{path}: record at byte {offset}: length CRC mismatch "
                             "(the length field is damaged)")
  if stored != length:
    raise CorruptRecordError(f"{path}: record at byte {offset} has length {stored}, "
                             f"index says {length}")
  data = f.read(int(length))
  footer = f.read(_FOOTER) if verify else b""
  if len(data) != length or (verify and len(footer) != _FOOTER):
    raise CorruptRecordError(f"{path}: truncated record at byte {offset}")
  if verify and struct.unpack("<I", footer)[0] != masked_crc(data):
    raise CorruptRecordError(f"{path}: record at byte {offset}: data CRC mismatch "
                             "(the record's bytes are damaged)")
  return data


def title_problem(dataset_dir, entry):
  """Why a title's files cannot be read (cheap: stat + index), or None when they look whole.

  Checks that the records file and the index exist, that the index has the manifest's
  number of snippets, and that its last record (offset + length + framing) ends exactly
  at the end of the records file, so a truncated or swapped file is found at start-up.
  """
  records_path = storage.join(dataset_dir, entry["records"])
  index_path = storage.join(dataset_dir, entry["index"])
  for what, path in (("records file", records_path), ("index", index_path)):
    if not storage.isfile(path):
      return f"{what} {path} is missing"
  try:
    index = load_index(index_path)  # a local path or a bucket (gs://, s3://)
  except (OSError, ValueError) as e:
    return f"index {index_path} cannot be read ({e})"
  if len(index) != entry["num_snippets"]:
    return (f"index {index_path} has {len(index)} records, the manifest says "
            f"{entry['num_snippets']} snippets")
  size = storage.getsize(records_path)
  end = int(index[-1, 0] + index[-1, 1]) + _HEADER + _FOOTER if len(index) else 0
  if end != size:
    return (f"records file {records_path} has {size} bytes, its index ends at byte {end} "
            f"({'truncated' if size < end else 'longer than indexed'})")
  return None


def check_titles(titles, dataset_dir=None):
  """(titles whose files look whole, [(entry, problem)] of the others); see title_problem.

  Entries of pooled datasets carry their "dataset_dir"; else `dataset_dir` is used.
  """
  found = [(e, title_problem(e.get("dataset_dir", dataset_dir), e)) for e in titles]
  return [e for e, p in found if p is None], [(e, p) for e, p in found if p is not None]


class ClosedReaderError(ValueError):
  """A read after the reader was closed: its iterator was dropped while tf.data still
  prefetched."""


class SnippetReader:
  """Random access to snippet m of title n through the per-title index (no scan).

  Thread-safe. At most `max_open` titles keep their records file open and their index
  loaded (least recently used first out), so a reader over thousands of titles stays
  within the open-file limit. With `verify` (the default) every record's CRC32Cs are
  checked; a damaged one raises CorruptRecordError naming the file, title and snippet.
  """

  def __init__(self, dataset_dir, manifest=None, max_open=128, verify=True):
    self.dataset_dir = dataset_dir
    self.verify = bool(verify)
    self.manifest = manifest or load_manifest(dataset_dir)
    self._entries = {t["id"]: t for t in self.manifest["titles"]}
    self.max_open = max(1, int(max_open))
    self._open = collections.OrderedDict()  # title id -> (file, index, path)
    self._lock = threading.Lock()
    self._closed = False

  def _handle(self, title_id):
    handle = self._open.get(title_id)
    if handle is not None:
      self._open.move_to_end(title_id)
      return handle
    try:
      entry = self._entries[title_id]
    except KeyError:
      raise KeyError(f"{self.dataset_dir}: no title {title_id!r} in the manifest") from None
    index = load_index(storage.join(self.dataset_dir, entry["index"]))
    if len(index) != entry["num_snippets"]:
      raise ValueError(f"{self.dataset_dir}: title {title_id}: index has {len(index)} records, "
                       f"the manifest says {entry['num_snippets']} snippets")
    path = storage.join(self.dataset_dir, entry["records"])
    handle = (storage.open(path, "rb"), index, path)  # pylint: disable=consider-using-with
    self._open[title_id] = handle
    while len(self._open) > self.max_open:
      self._open.popitem(last=False)[1][0].close()
    return handle

  def read(self, title_id, snippet_index):
    """Serialized tf.train.Example of snippet `snippet_index` of `title_id`."""
    with self._lock:
      if self._closed:
        raise ClosedReaderError(f"{self.dataset_dir}: read from a closed SnippetReader")
      f, index, path = self._handle(title_id)
      if not 0 <= snippet_index < len(index):
        raise IndexError(f"title {title_id}: snippet {snippet_index} out of range "
                         f"[0, {len(index)})")
      offset, length = index[snippet_index]
      try:
        return read_record(f, offset, length, path=path, verify=self.verify)
      except CorruptRecordError as e:
        err = CorruptRecordError(f"{self.dataset_dir}: title {title_id} snippet "
                                 f"{snippet_index}: {e}")
        err.detail = str(e)
        raise err from None

  def close(self):
    with self._lock:
      self._closed = True
      for f, _, _ in self._open.values():
        f.close()
      self._open.clear()

  def __enter__(self):
    return self

  def __exit__(self, *_):
    self.close()


class TitlesReader:
  """Reads snippet m of title n of a list of title entries (of pooled dataset dirs).

  One bounded SnippetReader per dataset dir; entries carry their "dataset_dir".
  """

  def __init__(self, titles, max_open, verify=True):
    self.titles = titles
    self._readers = {}
    for entry in titles:
      base = entry["dataset_dir"]
      if base not in self._readers:
        manifest = dict(titles=[t for t in titles if t["dataset_dir"] == base])
        self._readers[base] = SnippetReader(base, manifest=manifest, max_open=max_open,
                                            verify=verify)

  def read(self, n, m):
    entry = self.titles[n]
    return self._readers[entry["dataset_dir"]].read(entry["id"], m)

  def close(self):
    for reader in self._readers.values():
      reader.close()


# ---------------------------------------------------------------------------
# Manifest.


def manifest_path(dataset_dir):
  return storage.join(dataset_dir, MANIFEST)


def write_manifest(dataset_dir, manifest):
  storage.write_json(manifest_path(dataset_dir), manifest)


def load_manifest(dataset_dir):
  """Reads and checks `manifest.json`; errors name the file, title and key."""
  path = manifest_path(dataset_dir)
  if not storage.exists(path):
    raise FileNotFoundError(f"{path}: no manifest; is {dataset_dir!r} an avjax dataset "
                            "(python -m avjax.ingest --output=...)?")
  manifest = storage.read_json(path)
  version = manifest.get("format_version")
  if version not in READABLE_VERSIONS:
    raise ValueError(f"{path}: format_version {version!r}, this avjax reads "
                     f"{' and '.join(map(str, READABLE_VERSIONS))}")
  for key in ("params", "titles"):
    if key not in manifest:
      raise ValueError(f"{path}: missing key {key!r}")
  for i, title in enumerate(manifest["titles"]):
    for key in _TITLE_KEYS:
      if key not in title:
        raise ValueError(f"{path}: title #{i} ({title.get('id', '?')}) is missing key {key!r}")
    check_scene_ids(title, where=path)
  return manifest


def check_scene_ids(entry, where):
  """Checks a title's optional shot and scene ids: both or neither, one int >= 0 per
  snippet, and scene ids non-decreasing (a scene is a run of shots)."""
  present = [k for k in SCENE_KEYS if k in entry]
  if not present:
    return
  name = f"{where}: title {entry.get('id', '?')!r}"
  if len(present) == 1:
    raise ValueError(f"{name} has {present[0]} but not "
                     f"{[k for k in SCENE_KEYS if k not in present][0]}")
  for key in SCENE_KEYS:
    ids = entry[key]
    if (not isinstance(ids, list) or len(ids) != entry["num_snippets"] or
        not all(isinstance(i, int) and i >= 0 for i in ids)):
      raise ValueError(f"{name}: {key} must be a list of {entry['num_snippets']} ints >= 0 "
                       "(one per snippet)")
  if any(b < a for a, b in zip(entry["snippet_scenes"], entry["snippet_scenes"][1:])):
    raise ValueError(f"{name}: snippet_scenes must be non-decreasing (scenes are runs of "
                     "shots, numbered in time order)")
