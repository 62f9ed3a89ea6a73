r"""Ingests long-form video files into a snippet dataset (docs/data_format.md).

  python -m avjax.ingest --input=/data/videos --output=/data/avjax_ds --workers=8
  python -m avjax.ingest --input=list.txt --output=DIR --metadata=titles.csv --skip_errors
  python -m avjax.ingest --verify=DIR [--repair]

Rerunning the same command skips finished titles and completes the rest. The exit
status is 1 when any title was skipped (see DIR/ingest_report.json), unless
--skip_errors. One ingest at a time writes into an output folder (DIR/.ingest.lock).
`--verify` checks every record's CRC32C and every index of a dataset and exits 1 when
something is damaged; with `--repair` the damaged titles are removed from the dataset
so that a rerun of the ingest command ingests them again.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from avjax.ingest import params as params_lib

_D = params_lib.DEFAULT_PARAMS

flags.DEFINE_string("input", None, "Folder of video files (recursive), one video file, or a "
                    "text file listing video paths.")
flags.DEFINE_string("output", None, "Dataset directory.")
flags.DEFINE_string("metadata", None, "CSV with title_id, kind, show_id, genres[, path]; "
                    "default: titles.csv at the top of an --input folder, if any.")
flags.DEFINE_integer("workers", 1, "Titles ingested in parallel processes.")
flags.DEFINE_integer("threads", None, "Decoder threads per title (default: cores / workers).")
flags.DEFINE_integer("short_side", _D["short_side"], "Shorter frame side in pixels (224 for "
                     "the high-resolution setting).")
flags.DEFINE_float("fps", _D["fps"], "Stored frames per second.")
flags.DEFINE_integer("frames_per_snippet", _D["frames_per_snippet"], "Frames per snippet.")
flags.DEFINE_integer("jpeg_quality", _D["jpeg_quality"], "JPEG quality of stored frames.")
flags.DEFINE_float("val_fraction", _D["val_fraction"], "Held-out fraction (by title for "
                   "movies, by show for episodes).")
flags.DEFINE_float("shot_threshold", _D["shot_threshold"], "Color-histogram distance in [0, 1] "
                   "above which a frame starts a new shot.")
flags.DEFINE_bool("skip_errors", False, "Exit 0 even when some titles were skipped.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_float("title_timeout", 0.0, "Seconds one title may take; a title over it is "
                   "reported and skipped (0: no limit).")
flags.DEFINE_string("verify", None, "Check this dataset's records (CRC32C) and indices "
                    "instead of ingesting.")
flags.DEFINE_bool("repair", False, "With --verify: remove the damaged titles so that a "
                  "rerun of ingest redoes them.")


def verify_main(dataset_dir, repair):
  # pylint: disable=g-import-not-at-top
  from avjax.ingest import lock
  from avjax.ingest import verify
  try:
    report = verify.verify_dataset(dataset_dir, repair=repair)
  except lock.LockedError as e:
    sys.exit(f"avjax.ingest: {e}")
  print("\n".join(verify.summary(report)))
  return 1 if report["damaged"] and not report["repaired"] else 0


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if f.verify:
    return verify_main(f.verify, f.repair)
  if not f.input or not f.output:
    raise app.UsageError("--input and --output are required (or --verify=DIR)")
  if f.title_timeout < 0:
    raise app.UsageError(f"--title_timeout={f.title_timeout}: expected >= 0 seconds")
  params = dict(short_side=f.short_side, fps=f.fps, frames_per_snippet=f.frames_per_snippet,
                jpeg_quality=f.jpeg_quality, val_fraction=f.val_fraction,
                shot_threshold=f.shot_threshold)
  # Imported here, not at the top: TensorFlow loads only when the command runs.
  from avjax.ingest import lock  # pylint: disable=g-import-not-at-top
  from avjax.ingest import run  # pylint: disable=g-import-not-at-top
  try:
    report = run.ingest(f.input, f.output, metadata=f.metadata, workers=f.workers,
                        params=params, threads=f.threads, progress=f.progress,
                        title_timeout=f.title_timeout)
  except lock.LockedError as e:
    sys.exit(f"avjax.ingest: {e}")
  except KeyboardInterrupt:
    logging.warning("interrupted; finished titles are kept, rerun the same command to resume")
    return 130
  logging.info("ingested %d titles (%d snippets, %.2f h), %d already done, %d skipped; "
               "report in %s", report["ingested"], report["snippets"], report["hours"],
               report["already_done"], len(report["failed"]), f.output)
  for failure in report["failed"]:
    print(f"skipped {failure['path']}: {failure['reason']}")
  return 1 if report["failed"] and not f.skip_errors else 0


if __name__ == "__main__":
  app.run(main)
