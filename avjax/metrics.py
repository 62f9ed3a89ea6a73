"""Metrics of a run: TensorBoard scalars and hparams, and metrics.jsonl (no TensorFlow).

TensorBoard events are written with TensorBoard's own event writer, so this works on
hosts without TensorFlow; without the tensorboard package only metrics.jsonl is written.
Every process may call the writer; only process 0 writes.
"""

import json
import os
import time

import jax

try:  # the `data` extra installs tensorboard; an accelerator-only host may lack it
  from tensorboard.compat.proto import event_pb2
  from tensorboard.compat.proto import summary_pb2
  from tensorboard.plugins.hparams import summary_v2 as hparams_summary
  from tensorboard.summary.writer import event_file_writer
except ImportError:  # pragma: no cover
  event_file_writer = None

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Scalars to TensorBoard events under `logdir`, training lines to WORKDIR/metrics.jsonl."""

  def __init__(self, logdir, *, jsonl_path=None):
    self.enabled = jax.process_index() == 0
    self.jsonl_path = jsonl_path
    self._events = None
    if self.enabled and event_file_writer is not None:
      os.makedirs(logdir, exist_ok=True)
      self._events = event_file_writer.EventFileWriter(logdir)

  def _add(self, step, summary):
    if self._events is not None:
      self._events.add_event(event_pb2.Event(step=int(step), wall_time=time.time(),
                                             summary=summary))

  def write_scalars(self, step, scalars):
    """TensorBoard scalars {tag: value} at `step`."""
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
              for k, v in scalars.items()] if self._events is not None else []
    if values:
      self._add(step, summary_pb2.Summary(value=values))

  def write_line(self, step, scalars):
    """One JSON line {"step": step, **scalars} appended to metrics.jsonl."""
    if self.enabled and self.jsonl_path:
      with open(self.jsonl_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(step=int(step), **scalars)) + "\n")

  def write_hparams(self, hparams):
    if self._events is not None:
      self._add(0, hparams_summary.hparams_pb(hparams))

  def flush(self):
    if self._events is not None:
      self._events.flush()

  def close(self):
    if self._events is not None:
      self._events.close()
      self._events = None
