#!/usr/bin/env bash
# The main job, end to end on the embedded default data, on a CPU:
#   install -> generate synthetic movies and TV episodes -> ingest -> pretrain, with the
#   discrepancy measures, plots and event probe of the held-out titles along the way and
#   at the end -> export of f and g.
# Usage: bash launch/demo.sh [WORKDIR]   (default: runs/demo; relative to the current folder)
# The console gets one line per step of each command (and progress bars); the whole log,
# library output included, goes to WORKDIR/demo.log. AVJAX_VERBOSITY=1 shows it all.
# TOY=1 runs a tiny size (a test of this script, about a minute after the install).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-runs/demo}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"  # relative to the caller's folder, before anything moves
EXTRAS=data source "$REPO/launch/env.sh"
export AVJAX_LOG_FILE="${AVJAX_LOG_FILE:-$WORK/demo.log}"

# Sizes: 12 titles of about a minute, 200 steps of the tiny model at batch 16.
MOVIES=6 SHOWS=3 EPISODES=2 MINUTES=1 SHORT_SIDE=64 VAL=0.3 STEPS=200 EVAL_EVERY=40
LOG_EVERY=10 SYNTHETIC_ARGS=() MAIN_ARGS=()
if [[ "${TOY:-0}" == "1" ]]; then  # the sizes of launch/study_sampling.sh's TOY
  MOVIES=4 SHOWS=1 EPISODES=2 MINUTES=0.3 SHORT_SIDE=32 VAL=0.4 STEPS=4 EVAL_EVERY=2
  LOG_EVERY=1 SYNTHETIC_ARGS=(--width=160 --height=90)
  MAIN_ARGS=(--config.batch_size=8 --config.data.k=2 --config.data.num_frames=4
             --config.data.short_side=32 --config.data.crop_size=24 --config.data.hop=1024
             --config.discrepancy.probe_steps=20)
fi

echo "[demo] 1/3 generating synthetic long-form titles in $WORK/synthetic"
if [[ ! -f "$WORK/synthetic/labels.json" ]]; then
  python -m avjax.synthetic --output="$WORK/synthetic" --movies="$MOVIES" --shows="$SHOWS" \
    --episodes="$EPISODES" --minutes="$MINUTES" --seed=0 ${SYNTHETIC_ARGS[@]+"${SYNTHETIC_ARGS[@]}"}
else
  echo "[demo] already there"
fi

echo "[demo] 2/3 ingesting them into snippet records in $WORK/dataset"
python -m avjax.ingest --input="$WORK/synthetic" --output="$WORK/dataset" \
  --short_side="$SHORT_SIDE" --val_fraction="$VAL" --workers=2

echo "[demo] 3/3 pretraining the tiny demo model (k=4 snippets per title) in $WORK/run," \
     "with the discrepancy measures every $EVAL_EVERY steps and the event probe at the end"
python -m avjax.main --config="configs/pretrain.py:dataset=$WORK/dataset,k=4,runlocal" \
  --workdir="$WORK/run" --config.total_steps="$STEPS" --config.evals.discrepancy="$EVAL_EVERY" \
  --config.checkpoint_every_steps=100 --config.log_every_steps="$LOG_EVERY" \
  ${MAIN_ARGS[@]+"${MAIN_ARGS[@]}"}

cat <<MSG

[demo] done.
  logs (TensorBoard):  tensorboard --logdir $WORK/run
  metrics per step:    $WORK/run/metrics.jsonl
  exported f and g:    $WORK/run/export
  discrepancy + probe: $WORK/run/discrepancy.json
  plots:               $WORK/run/discrepancy_hist.png, $WORK/run/discrepancy_curves.png
  full log:            $AVJAX_LOG_FILE
MSG
