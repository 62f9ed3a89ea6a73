"""Metrics of a run: TensorBoard scalars and hparams, and metrics.jsonl (no TensorFlow).

TensorBoard events are written with TensorBoard's own event writer, so this works on
hosts without TensorFlow; without the tensorboard package only metrics.jsonl is written.
Every process may call the writer; only process 0 writes.

One event stream per workdir: every writer of a folder (the training run, a resumed run,
a standalone evaluation) adds to the same TensorBoard run, and a (tag, step) that the
folder's event files already hold is not written again, so no step shows twice. Files
are opened on the first write: a writer that writes nothing leaves nothing behind.
"""

import glob
import json
import os
import struct
import time

import jax
from absl import logging

from avjax import fileio

try:  # the `data` extra installs tensorboard; an accelerator-only host may lack it
  from tensorboard.compat.proto import event_pb2
  from tensorboard.compat.proto import summary_pb2
  from tensorboard.plugins.hparams import summary_v2 as hparams_summary
  from tensorboard.summary.writer import event_file_writer
except ImportError:  # pragma: no cover
  event_file_writer = None

METRICS_FILE = "metrics.jsonl"
EVENTS_GLOB = "events.out.tfevents.*"


def read_events(path):
  """The Event protos of one event file, in order; stops at a truncated record.

  TFRecord framing: uint64 length, uint32 CRC of the length, data, uint32 CRC of the data
  (the CRCs are not checked here: a damaged record fails to parse or ends the file).
  """
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return
      (length,) = struct.unpack("<Q", header[:8])
      data = f.read(length)
      if len(data) < length or len(f.read(4)) < 4:
        return
      event = event_pb2.Event()
      try:
        event.ParseFromString(data)
      except Exception:  # pylint: disable=broad-except
        return
      yield event


def written_pairs(logdir):
  """{(tag, step)} of every summary value in the event files directly under `logdir`."""
  pairs = set()
  if event_file_writer is None:  # no TensorBoard here: nothing to parse the files with
    return pairs
  for path in sorted(glob.glob(os.path.join(logdir, EVENTS_GLOB))):
    for event in read_events(path):
      for value in event.summary.value:
        pairs.add((value.tag, int(event.step)))
  return pairs


class MetricWriter:
  """Scalars to TensorBoard events under `logdir`, training lines to WORKDIR/metrics.jsonl."""

  def __init__(self, logdir, *, jsonl_path=None):
    self.enabled = jax.process_index() == 0
    self.logdir = logdir
    self.jsonl_path = jsonl_path
    self.skipped = 0  # values not written: their (tag, step) was in the folder already
    self._events = None
    self._written = None  # (tag, step) pairs in the folder, read on the first write

  def _writer(self):
    if self._events is None and self.enabled and event_file_writer is not None:
      os.makedirs(self.logdir, exist_ok=True)
      self._written = written_pairs(self.logdir)
      self._events = event_file_writer.EventFileWriter(self.logdir)
    return self._events

  def _add(self, step, summary):
    events = self._writer()
    if events is None:
      return
    fresh = [v for v in summary.value if (v.tag, int(step)) not in self._written]
    self.skipped += len(summary.value) - len(fresh)
    if not fresh:
      return
    del summary.value[:]
    summary.value.extend(fresh)
    self._written.update((v.tag, int(step)) for v in fresh)
    events.add_event(event_pb2.Event(step=int(step), wall_time=time.time(), summary=summary))

  def write_scalars(self, step, scalars):
    """TensorBoard scalars {tag: value} at `step` (those not in the folder's events yet)."""
    if not (self.enabled and event_file_writer is not None and scalars):
      return
    before = self.skipped
    self._add(step, summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]))
    if self.skipped > before:
      logging.info("TensorBoard already holds %d of these values at step %d in %s; kept "
                   "those", self.skipped - before, step, self.logdir)

  def write_line(self, step, scalars):
    """One JSON line {"step": step, **scalars} appended to metrics.jsonl."""
    if self.enabled and self.jsonl_path:
      with open(self.jsonl_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(step=int(step), **scalars)) + "\n")

  def drop_lines_after(self, step):
    """Removes metrics.jsonl's lines of steps after `step` (atomically): a resumed run
    trains them again, so each step keeps one line."""
    if not (self.enabled and self.jsonl_path and os.path.exists(self.jsonl_path)):
      return
    with open(self.jsonl_path, encoding="utf-8") as f:
      lines = f.readlines()

    def keep(line):
      try:
        return int(json.loads(line)["step"]) <= step
      except (ValueError, KeyError, TypeError):
        return False  # a line cut short by a kill
    kept = [l if l.endswith("\n") else l + "\n" for l in lines if keep(l)]
    if len(kept) < len(lines):
      with fileio.atomic_path(self.jsonl_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
          f.writelines(kept)

  def write_hparams(self, hparams):
    if self.enabled and event_file_writer is not None:
      self._add(0, hparams_summary.hparams_pb(hparams))

  def flush(self):
    if self._events is not None:
      self._events.flush()

  def close(self):
    if self._events is not None:
      self._events.close()
      self._events = None
