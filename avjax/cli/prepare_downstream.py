r"""Prepares a downstream dataset once: clips decoded into TFRecord shards, splits, report.

  python -m avjax.prepare_downstream --dataset=ucf101 --root=/data/UCF101 --output=data/ucf101
  python -m avjax.prepare_downstream --dataset=hmdb51 --root=/data/hmdb51 --output=data/hmdb51
  python -m avjax.prepare_downstream --dataset=esc50 --root=/data/ESC-50-master --output=data/esc50

Standard layouts (avjax/data/layouts.py, docs/downstream.md):
  ucf101  ROOT/UCF-101/<class>/*.avi, ROOT/ucfTrainTestlist/{classInd,trainlist0k,testlist0k}.txt
  hmdb51  ROOT/<class>/*.avi, ROOT/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt
  esc50   ROOT/audio/*.wav, ROOT/meta/esc50.csv

Clips that cannot be decoded are skipped and listed in OUTPUT/prepare_report.json; the
exit status is then 1 unless --skip_errors. Rerunning the command skips finished shards.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from avjax import console

flags.DEFINE_enum("dataset", None, ["ucf101", "hmdb51", "esc50"], "Which dataset.")
flags.DEFINE_string("root", None, "The dataset in its standard layout.")
flags.DEFINE_string("output", None, "The prepared directory to write.")
flags.DEFINE_integer("workers", 1, "Parallel processes (one shard each at a time).")
flags.DEFINE_float("fps", 10.0, "Frame rate of the stored frames (Section 4.1: 10).")
flags.DEFINE_integer("short_side", 226, "Shorter side of the stored frames (226: the top "
                     "of the [181, 226] scale jitter; 266 for res=high).")
flags.DEFINE_integer("sample_rate", 48000, "Audio sample rate (Hz).")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the stored frames.")
flags.DEFINE_integer("clips_per_shard", 64, "Clips per TFRecord shard.")
flags.DEFINE_bool("skip_errors", False, "Exit 0 even when clips were skipped.")
flags.mark_flags_as_required(["dataset", "root", "output"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  console.setup()  # the log file opens in the output folder once the layout is read
  # Imported here, not at the top: TensorFlow loads only when the command runs.
  with console.native_output_to_log():
    from avjax.downstream import prepare  # pylint: disable=g-import-not-at-top
  report = prepare.prepare(
      FLAGS.dataset, FLAGS.root, FLAGS.output, workers=FLAGS.workers, fps=FLAGS.fps,
      short_side=FLAGS.short_side, sample_rate=FLAGS.sample_rate,
      jpeg_quality=FLAGS.jpeg_quality, clips_per_shard=FLAGS.clips_per_shard)
  counts = report["counts"]
  console.done(f"{FLAGS.dataset}: {counts['prepared']} clips prepared; "
               f"{counts['missing']} missing, {counts['unreadable']} unreadable, "
               f"{counts['unlisted']} on disk but in no split file", prepared=FLAGS.output,
               report=f"{FLAGS.output}/prepare_report.json")
  if (counts["missing"] or counts["unreadable"]) and not FLAGS.skip_errors:
    logging.error("clips were skipped (see %s/prepare_report.json); pass --skip_errors to "
                  "accept", FLAGS.output)
    sys.exit(1)
