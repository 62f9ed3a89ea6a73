r"""Ingests long-form video files into a snippet dataset (docs/data_format.md).

  python -m avjax.ingest --input=/data/videos --output=/data/avjax_ds --workers=8
  python -m avjax.ingest --input=list.txt --output=DIR --metadata=titles.csv --skip_errors
  python -m avjax.ingest --verify=DIR [--repair]

On Apache Beam (avjax/ingest/beam.py), where input and output may be on a bucket:

  python -m avjax.ingest --input=DIR --output=DIR --runner=DirectRunner --workers=2
  python -m avjax.ingest --input=gs://B/movies --output=gs://B/ds --runner=DataflowRunner \
      --beam_pipeline_options="project=P,region=R,temp_location=gs://B/tmp"

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

from avjax import console
from avjax.ingest import params as params_lib

_D = params_lib.DEFAULT_PARAMS

flags.DEFINE_string("input", None, "Folder of video files (recursive), one video file, or a "
                    "text file listing video paths.")
flags.DEFINE_string("output", None, "Dataset directory.")
flags.DEFINE_string("metadata", None, "CSV with title_id, kind, show_id, genres[, path]; "
                    "default: titles.csv at the top of an --input folder, if any.")
flags.DEFINE_integer("workers", 1, "Titles ingested in parallel processes (also the "
                     "DirectRunner's, unless --beam_pipeline_options sets direct_num_workers).")
flags.DEFINE_integer("threads", None, "Decoder threads per title (default: cores / workers; "
                     "1 with --runner).")
flags.DEFINE_integer("short_side", _D["short_side"], "Shorter frame side in pixels (224 for "
                     "the high-resolution setting).")
flags.DEFINE_float("fps", _D["fps"], "Stored frames per second.")
flags.DEFINE_integer("frames_per_snippet", _D["frames_per_snippet"], "Frames per snippet.")
flags.DEFINE_integer("jpeg_quality", _D["jpeg_quality"], "JPEG quality of stored frames.")
flags.DEFINE_float("val_fraction", _D["val_fraction"], "Held-out fraction (by title for "
                   "movies, by show for episodes).")
flags.DEFINE_float("shot_threshold", _D["shot_threshold"], "Color-histogram distance in [0, 1] "
                   "above which a frame starts a new shot.")
flags.DEFINE_float("scene_threshold", _D["scene_threshold"], "Distance of shots' key "
                   "histograms at or below which a shot joins the scene before it.")
flags.DEFINE_bool("skip_errors", False, "Exit 0 even when some titles were skipped.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_float("title_timeout", 0.0, "Seconds one title may take; a title over it is "
                   "reported and skipped (0: no limit).")
flags.DEFINE_string("verify", None, "Check this dataset's records (CRC32C) and indices "
                    "instead of ingesting.")
flags.DEFINE_bool("repair", False, "With --verify: remove the damaged titles so that a "
                  "rerun of ingest redoes them.")

flags.DEFINE_string("runner", None, "Ingest on Apache Beam with this runner (DirectRunner, "
                    "DataflowRunner, FlinkRunner, SparkRunner, ...); default: the local path, "
                    "--workers processes on this host.")
flags.DEFINE_string("beam_pipeline_options", "", "Other Beam pipeline options, comma-separated "
                    "key=value, e.g. 'project=P,region=R,temp_location=gs://B/tmp' or "
                    "'direct_num_workers=2,direct_running_mode=multi_processing'.")


def _ingest(f, params):
  """Runs the local path, or the Beam pipeline with --runner."""
  # Imported here, not at the top: TensorFlow and Beam load only when the command runs.
  # pylint: disable=g-import-not-at-top
  if f.runner:
    if f.title_timeout:
      raise app.UsageError("--title_timeout applies to the local path (without --runner); "
                           "Beam runners have their own limits")
    with console.native_output_to_log():
      from avjax.ingest import beam as beam_ingest
    return beam_ingest.ingest(f.input, f.output, runner=f.runner,
                              beam_pipeline_options=f.beam_pipeline_options,
                              metadata=f.metadata, params=params, threads=f.threads,
                              workers=f.workers)
  if f.beam_pipeline_options:
    raise app.UsageError("--beam_pipeline_options needs --runner")
  from avjax import storage
  remote = [p for p in (f.input, f.output, f.metadata) if p and not storage.is_local(p)]
  if remote:
    raise app.UsageError(f"{remote[0]}: paths on a bucket need a Beam runner "
                         "(--runner=DirectRunner to ingest on this host)")
  with console.native_output_to_log():
    from avjax.ingest import run
  return run.ingest(f.input, f.output, metadata=f.metadata, workers=f.workers, params=params,
                    threads=f.threads, progress=f.progress, title_timeout=f.title_timeout)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  console.setup()  # the log file opens in the dataset folder once the input is found
  from avjax.ingest import lock  # pylint: disable=g-import-not-at-top
  if f.verify:
    from avjax.ingest import verify  # pylint: disable=g-import-not-at-top
    try:
      report = verify.verify_dataset(f.verify, repair=f.repair)
    except lock.LockedError as e:
      sys.exit(f"avjax.ingest: {e}")
    print("\n".join(verify.summary(report)))
    return 1 if report["damaged"] and not report["repaired"] else 0
  if not f.input or not f.output:
    raise app.UsageError("--input and --output are required (or --verify=DIR)")
  if f.title_timeout < 0:
    raise app.UsageError(f"--title_timeout={f.title_timeout}: expected >= 0 seconds")
  params = dict(short_side=f.short_side, fps=f.fps, frames_per_snippet=f.frames_per_snippet,
                jpeg_quality=f.jpeg_quality, val_fraction=f.val_fraction,
                shot_threshold=f.shot_threshold, scene_threshold=f.scene_threshold)
  try:
    report = _ingest(f, params)
  except lock.LockedError as e:
    sys.exit(f"avjax.ingest: {e}")
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
