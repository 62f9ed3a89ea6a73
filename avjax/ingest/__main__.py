r"""Ingests long-form video files into a snippet dataset (docs/data_format.md).

  python -m avjax.ingest --input=/data/videos --output=/data/avjax_ds --workers=8
  python -m avjax.ingest --input=list.txt --output=DIR --metadata=titles.csv --skip_errors

Rerunning the same command skips finished titles and completes the rest. The exit
status is 1 when any title was skipped (see DIR/ingest_report.json), unless
--skip_errors.
"""

from absl import app
from absl import flags
from absl import logging

from avjax import console
from avjax.ingest import params as params_lib

_D = params_lib.DEFAULT_PARAMS

flags.DEFINE_string("input", None, "Folder of video files (recursive), one video file, or a "
                    "text file listing video paths.", required=True)
flags.DEFINE_string("output", None, "Dataset directory.", required=True)
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  console.setup()  # the log file opens in the dataset folder once the input is found
  params = dict(short_side=f.short_side, fps=f.fps, frames_per_snippet=f.frames_per_snippet,
                jpeg_quality=f.jpeg_quality, val_fraction=f.val_fraction,
                shot_threshold=f.shot_threshold)
  # Imported here, not at the top: TensorFlow loads only when the command runs.
  with console.native_output_to_log():
    from avjax.ingest import run  # pylint: disable=g-import-not-at-top
  try:
    report = run.ingest(f.input, f.output, metadata=f.metadata, workers=f.workers,
                        params=params, threads=f.threads, progress=f.progress)
  except KeyboardInterrupt:
    logging.warning("interrupted; finished titles are kept, rerun the same command to resume")
    return 130
  for failure in report["failed"]:
    print(f"skipped {failure['path']}: {failure['reason']}")
  console.done(f"ingested {report['ingested']} titles ({report['snippets']} snippets, "
               f"{report['hours']:.2f} h), {report['already_done']} already done, "
               f"{len(report['failed'])} skipped", dataset=f.output,
               report=f"{f.output}/ingest_report.json")
  return 1 if report["failed"] and not f.skip_errors else 0


if __name__ == "__main__":
  app.run(main)
