"""One ingest at a time per output folder: DATASET_DIR/.ingest.lock (avjax.dirlock).

Taken by the ingest driver (never by its workers), by `--verify --repair` and by
add_scenes; a second one is refused at once naming the holder's PID and host.
"""

from avjax import dirlock

LOCK_FILE = ".ingest.lock"
LockedError = dirlock.LockedError
process_alive = dirlock.process_alive


class IngestLock(dirlock.DirLock):
  """`with IngestLock(dataset_dir):` holds the dataset folder's lock while the block runs."""

  def __init__(self, dataset_dir, purpose="ingest"):
    super().__init__(dataset_dir, LOCK_FILE, purpose)
