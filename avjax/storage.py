"""Files on local disk or in an object store (gs://, s3://, ...) through one small API.

A local path goes to `os` and the built-in `open`, as before. A path with a scheme goes
through etils.epath's backends: gs:// and TensorFlow's other file systems (ram://,
hdfs://, ...) through tf.io.gfile when TensorFlow is installed; s3://, az://, hf:// (and
gs:// without TensorFlow) through fsspec (s3fs, gcsfs). TensorFlow is loaded only when
such a path is used, so modules that import this one stay TensorFlow-free.

Object stores have no atomic rename, but an object appears only once written whole;
`publish` and `write_json` write to a unique temporary name and then rename, so a reader
never sees half a file under its final name on any file system.
"""

import importlib.util
import json
import os
import posixpath
import re
import shutil
import uuid

from etils.epath import backend as backend_lib

from avjax import fileio

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# TensorFlow 2.21 has no s3:// file system of its own (that moved to tensorflow-io).
_FSSPEC_SCHEMES = ("s3", "az", "hf")
_COPY_CHUNK = 8 << 20


def scheme(path):
  """'gs' for gs://bucket/x; None for a local path."""
  m = _SCHEME.match(os.fspath(path))
  return m.group(1).lower() if m else None


def is_local(path):
  return scheme(path) is None


def _backend(path):
  s = scheme(path)
  if s is None:
    return backend_lib.os_backend
  if s in _FSSPEC_SCHEMES or (s == "gs" and importlib.util.find_spec("tensorflow") is None):
    return backend_lib.fsspec_backend
  return backend_lib.tf_backend


def _split(path):
  """('gs://', 'bucket/x') or ('', path)."""
  m = _SCHEME.match(os.fspath(path))
  return (m.group(0), path[m.end():]) if m else ("", path)


# ---------------------------------------------------------------------------
# Path strings.


def join(path, *parts):
  return os.path.join(path, *parts) if is_local(path) else posixpath.join(path, *parts)


def dirname(path):
  if is_local(path):
    return os.path.dirname(path)
  prefix, rest = _split(path)
  return prefix + posixpath.dirname(rest)


def basename(path):
  return os.path.basename(path) if is_local(path) else posixpath.basename(path)


def abspath(path):
  """An absolute local path; a URI as it is."""
  return os.path.abspath(path) if is_local(path) else path


def normpath(path):
  if is_local(path):
    return os.path.normpath(path)
  prefix, rest = _split(path)
  return prefix + posixpath.normpath(rest).lstrip("/")


def relpath(path, start):
  if is_local(path):
    return os.path.relpath(path, start)
  (p0, rest), (s0, base) = _split(path), _split(start)
  if p0 != s0:
    return path
  return posixpath.relpath("/" + rest, "/" + base.rstrip("/"))


# ---------------------------------------------------------------------------
# Files.


def open(path, mode="rb"):  # pylint: disable=redefined-builtin
  """A file object (also a context manager) for `path`; random access where it reads."""
  path = os.fspath(path)
  backend = _backend(path)
  if backend is backend_lib.tf_backend:
    return backend.gfile.GFile(path, mode)  # the backend's open() is a context manager only
  if backend is backend_lib.os_backend:
    return backend_lib.os_backend.open(path, mode)
  return backend.fs(path).open(path, mode=mode)


def exists(path):
  return _backend(path).exists(path)


def isdir(path):
  return _backend(path).isdir(path)


def isfile(path):
  return exists(path) and not isdir(path)


def getsize(path):
  if is_local(path):
    return os.path.getsize(path)
  return int(_backend(path).stat(path).length)


def glob(pattern):
  """Sorted matches of `pattern`, with the pattern's scheme."""
  prefix, _ = _split(pattern)
  found = _backend(pattern).glob(pattern)
  return sorted(p if (not prefix or scheme(p)) else prefix + p.lstrip("/") for p in found)


def walk(top):
  """(folder, subfolders, files) under `top`, top-down; folders keep `top`'s scheme.

  Like os.walk, a caller may prune `subfolders` in place (honoured on local disk; an
  object store lists everything, so filter the results there as well).
  """
  prefix, _ = _split(top)
  for folder, dirs, files in _backend(top).walk(top):
    folder = os.fspath(folder)
    if prefix and not scheme(folder):
      folder = prefix + folder.lstrip("/")
    yield folder, dirs, files


def makedirs(path):
  """Creates `path` and its parents; a no-op on object stores where folders are implicit."""
  _backend(path).makedirs(path, exist_ok=True)


def remove(path):
  _backend(path).remove(path)


def replace(src, dst):
  """Renames `src` onto `dst`, replacing it (a copy and delete on object stores)."""
  _backend(dst).replace(src, dst)


def temporary_name(path):
  """A name next to `path` that no other writer (process, host or retry) will pick."""
  return f"{path}.{uuid.uuid4().hex}.tmp"


def copy(src, dst):
  """Copies a file, across file systems too (local disk to a bucket and back)."""
  if is_local(src) and is_local(dst):
    shutil.copyfile(src, dst)
    return
  with open(src, "rb") as a, open(dst, "wb") as b:
    shutil.copyfileobj(a, b, _COPY_CHUNK)


def publish(src, dst):
  """Copies `src` to a unique temporary name next to `dst`, then renames it onto `dst`."""
  tmp = temporary_name(dst)
  if is_local(dst):
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
  try:
    copy(src, tmp)
    replace(tmp, dst)
  except BaseException:
    if exists(tmp):
      remove(tmp)
    raise


def read_json(path):
  if is_local(path):
    return fileio.read_json(path)
  with open(path, "r") as f:
    text = f.read()
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from e


def write_json(path, obj):
  """Writes `obj` as indented JSON, atomically (fileio.write_json's bytes, on any store)."""
  if is_local(path):
    fileio.write_json(path, obj)
    return
  tmp = temporary_name(path)
  try:
    with open(tmp, "w") as f:
      f.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    replace(tmp, path)
  except BaseException:
    if exists(tmp):
      remove(tmp)
    raise
