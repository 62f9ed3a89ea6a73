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

# Sizes: the "demo" synthetic preset (52 titles of about a minute, the look of the
# sampling study's benchmark), 300 steps of the tiny model at batch 64, k = 16.
SYNTHETIC_ARGS=() VAL=0.25 STEPS=300 EVAL_EVERY=100 LOG_EVERY=10
MAIN_ARGS=(--config.batch_size=64 --config.data.k=16 --config.optimizer.lr_peak=0.005)
if [[ "${TOY:-0}" == "1" ]]; then  # the sizes of launch/study_sampling.sh's TOY
  SYNTHETIC_ARGS=(--movies=4 --shows=1 --episodes=2 --minutes=0.3) VAL=0.4 STEPS=4
  EVAL_EVERY=2 LOG_EVERY=1
  MAIN_ARGS=(--config.batch_size=6 --config.data.k=2 --config.discrepancy.probe_steps=20)
  MICRO=",micro"  # configs/pretrain.py: f and g of one stage
fi

echo "[demo] 1/3 generating synthetic long-form titles in $WORK/synthetic (preset \"demo\")"
if [[ ! -f "$WORK/synthetic/labels.json" ]]; then
  python -m avjax.synthetic --output="$WORK/synthetic" --preset=demo --seed=0 --workers=2 \
    ${SYNTHETIC_ARGS[@]+"${SYNTHETIC_ARGS[@]}"}
else
  echo "[demo] already there"
fi

echo "[demo] 2/3 ingesting them into snippet records in $WORK/dataset"
python -m avjax.ingest --input="$WORK/synthetic" --output="$WORK/dataset" \
  --short_side=32 --val_fraction="$VAL" --workers=2

echo "[demo] 3/3 pretraining the tiny demo model (k=16 snippets per title) in $WORK/run," \
     "with the discrepancy measures every $EVAL_EVERY steps and the event probe at the end"
python -m avjax.main --config="configs/pretrain.py:dataset=$WORK/dataset,k=16,runlocal${MICRO:-}" \
  --workdir="$WORK/run" --config.total_steps="$STEPS" --config.evals.discrepancy="$EVAL_EVERY" \
  --config.checkpoint_every_steps=100 --config.log_every_steps="$LOG_EVERY" \
  --config.data.num_frames=4 --config.data.short_side=32 --config.data.crop_size=32 \
  --config.data.hop=1024 ${MAIN_ARGS[@]+"${MAIN_ARGS[@]}"}

echo
echo "[demo] done. Does it learn? (held-out titles, last step)"
python - "$WORK/run" <<'PY'
import json, os, sys
from avjax.evals import summary
entry = json.load(open(os.path.join(sys.argv[1], "discrepancy.json")))["steps"][-1]
print("\n".join("  " + line for line in summary.verdict_lines(entry)))
PY
cat <<MSG

  logs (TensorBoard):  tensorboard --logdir $WORK/run
  metrics per step:    $WORK/run/metrics.jsonl
  exported f and g:    $WORK/run/export
  discrepancy + probe: $WORK/run/discrepancy.json
  plots:               $WORK/run/discrepancy_hist.png, $WORK/run/discrepancy_curves.png
  full log:            $AVJAX_LOG_FILE
MSG
