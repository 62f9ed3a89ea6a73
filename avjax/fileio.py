"""Atomic file writes: write to a temporary name in the same folder, then rename."""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path next to `path`; renames it onto `path` on success.

  Already-written data is never lost: on any error the temporary file is
  removed and whatever stood at `path` before stays as it was.
  """
  path = os.fspath(path)
  folder = os.path.dirname(path) or "."
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
  os.close(fd)
  try:
    yield tmp
    # mkstemp makes owner-only files; give the result the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def write_json(path, obj):
  """Writes `obj` as indented JSON, atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2, sort_keys=False)
      f.write("\n")


def read_json(path):
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from e
