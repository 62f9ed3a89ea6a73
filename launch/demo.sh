#!/usr/bin/env bash
# The main job, end to end on the embedded default data, on a CPU in a few minutes:
#   install -> generate synthetic movies and TV episodes -> ingest -> pretrain -> export
#   -> discrepancy measures and plots on the held-out titles.
# Usage: bash launch/demo.sh [WORKDIR]   (default: ./runs/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$(mkdir -p "${1:-runs/demo}" && cd "${1:-runs/demo}" && pwd)"
EXTRAS=data source launch/env.sh
export TF_CPP_MIN_LOG_LEVEL=2

echo "[demo] 1/4 generating synthetic long-form titles in $WORK/synthetic"
if [[ ! -f "$WORK/synthetic/labels.json" ]]; then
  python -m avjax.synthetic --output="$WORK/synthetic" --movies=6 --shows=3 --episodes=2 \
    --minutes=1 --seed=0
fi

echo "[demo] 2/4 ingesting them into snippet records in $WORK/dataset"
python -m avjax.ingest --input="$WORK/synthetic" --output="$WORK/dataset" --short_side=64 \
  --val_fraction=0.3 --workers=2 --noprogress

echo "[demo] 3/4 pretraining the tiny demo model (k=4 snippets per title) in $WORK/run"
python -m avjax.main --config="configs/pretrain.py:dataset=$WORK/dataset,k=4,runlocal" \
  --workdir="$WORK/run" --config.total_steps=200 --config.evals.discrepancy=40 \
  --config.checkpoint_every_steps=100 --alsologtostderr

echo "[demo] 4/4 discrepancy measures and plots of the final model"
python -m avjax.discrepancy --workdir="$WORK/run"

cat <<MSG

[demo] done.
  logs (TensorBoard):  tensorboard --logdir $WORK/run
  metrics per step:    $WORK/run/metrics.jsonl
  checkpoints:         $WORK/run/checkpoints
  exported f and g:    $WORK/run/export
  discrepancy + plots: $WORK/run/discrepancy.json, $WORK/run/*.png
MSG
