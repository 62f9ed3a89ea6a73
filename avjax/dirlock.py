"""One writer at a time per folder: a lock file naming the holder's PID and host.

A lock file (e.g. `DATASET_DIR/.ingest.lock`, `WORKDIR/.run.lock`) is created exclusively
(O_EXCL) by the process that writes the folder and holds {"pid", "host", "purpose",
"started", "token"}. A second writer of the same folder is refused at once with the
holder named. A lock is stale, and is taken over, when its process is gone (same host: the
PID no longer runs, or runs a process started at another time), or, for a holder on
another host, when the holder has not refreshed the file's modification time for
STALE_SECONDS (the holder refreshes it every REFRESH_SECONDS).
"""

import contextlib
import json
import os
import socket
import threading
import time
import uuid

from absl import logging

REFRESH_SECONDS = 60.0
STALE_SECONDS = 600.0


class LockedError(RuntimeError):
  """Another live process holds the folder's lock."""


def _start_time(pid):
  """The kernel's start time of process `pid` (clock ticks since boot), or None."""
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
      return int(f.read().rsplit(")", 1)[1].split()[19])
  except (OSError, IndexError, ValueError):
    return None


def process_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's process
  return True


def _read(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def stale_reason(holder, path):
  """Why the lock at `path` held by `holder` (its JSON, or None) is stale, or None if live."""
  try:
    age = time.time() - os.path.getmtime(path)
  except FileNotFoundError:
    return "it is gone"
  if not isinstance(holder, dict) or "pid" not in holder:
    # Unreadable: a holder may be writing it this instant; old and unreadable is stale.
    return f"it is unreadable and {age:.0f} s old" if age > REFRESH_SECONDS else None
  pid, host = int(holder["pid"]), holder.get("host")
  if host == socket.gethostname():
    if not process_alive(pid):
      return f"process {pid} on {host} is gone"
    started = holder.get("start_time")
    if started is not None and _start_time(pid) not in (None, started):
      return f"process {pid} on {host} is another process now"
    return None
  if age > STALE_SECONDS:
    return f"{host} has not refreshed it for {age:.0f} s"
  return None


def describe(holder):
  if not isinstance(holder, dict):
    return "an unknown process (the lock file is unreadable)"
  return (f"PID {holder.get('pid')} on host {holder.get('host')}, started "
          f"{holder.get('started', '?')}")


class DirLock:
  """`with DirLock(folder, LOCK_FILE, purpose):` holds the folder's lock (creating the
  folder if needed); refreshes it while held."""

  def __init__(self, folder, filename, purpose):
    self.path = os.path.join(folder, filename)
    self.purpose = purpose
    self._token = uuid.uuid4().hex
    self._stop = threading.Event()
    self._thread = None

  def acquire(self):
    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
    for _ in range(3):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = _read(self.path)
        why = stale_reason(holder, self.path)
        if why is None:
          what = holder.get("purpose", self.purpose) if isinstance(holder, dict) else self.purpose
          raise LockedError(
              f"{os.path.dirname(self.path)} is being written by another {what}: "
              f"{describe(holder)} (lock file {self.path}). Wait for it to finish; if that "
              "process is gone, remove the lock file.") from None
        logging.warning("taking over the stale lock %s of %s: %s", self.path,
                        describe(holder), why)
        with contextlib.suppress(FileNotFoundError):
          os.remove(self.path)
        continue
      me = dict(pid=os.getpid(), host=socket.gethostname(), purpose=self.purpose,
                started=time.strftime("%Y-%m-%d %H:%M:%S"), start_time=_start_time(os.getpid()),
                token=self._token)
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(me, f)
      self._thread = threading.Thread(target=self._refresh, name="dir-lock", daemon=True)
      self._thread.start()
      return self
    raise LockedError(f"{self.path}: could not take the lock (others keep taking it)")

  def _refresh(self):
    while not self._stop.wait(REFRESH_SECONDS):
      try:
        os.utime(self.path)
      except OSError:
        return

  def release(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    holder = _read(self.path)
    if isinstance(holder, dict) and holder.get("token") == self._token:
      os.remove(self.path)

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *_):
    self.release()
