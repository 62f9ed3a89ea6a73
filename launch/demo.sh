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

echo "[demo] 1/4 generating synthetic long-form titles in $WORK/synthetic (preset \"demo\")"
if [[ ! -f "$WORK/synthetic/labels.json" ]]; then
  python -m avjax.synthetic --output="$WORK/synthetic" --preset=demo --seed=0 --workers=2
fi

echo "[demo] 2/4 ingesting them into snippet records in $WORK/dataset"
python -m avjax.ingest --input="$WORK/synthetic" --output="$WORK/dataset" --short_side=32 \
  --val_fraction=0.25 --workers=2 --noprogress

echo "[demo] 3/4 pretraining the tiny demo model (k=4 snippets per title) in $WORK/run"
python -m avjax.main --config="configs/pretrain.py:dataset=$WORK/dataset,k=4,runlocal" \
  --workdir="$WORK/run" --config.total_steps=300 --config.batch_size=64 \
  --config.optimizer.lr_peak=0.005 --config.data.num_frames=4 --config.data.short_side=32 \
  --config.data.crop_size=32 --config.data.hop=1024 --config.evals.discrepancy=100 \
  --config.checkpoint_every_steps=100 --alsologtostderr

echo "[demo] 4/4 discrepancy measures, probes and plots of the final model"
python -m avjax.discrepancy --workdir="$WORK/run"

echo
echo "[demo] done. Does it learn?"
python - "$WORK/run" <<'PY'
import json, os, sys
from avjax.evals import summary
entry = json.load(open(os.path.join(sys.argv[1], "discrepancy.json")))["steps"][-1]
print("\n".join("  " + line for line in summary.verdict_lines(entry)))
PY
cat <<MSG
  plots:               $WORK/run/discrepancy_hist.png, $WORK/run/discrepancy_curves.png
  logs (TensorBoard):  tensorboard --logdir $WORK/run
  metrics per step:    $WORK/run/metrics.jsonl
  checkpoints:         $WORK/run/checkpoints
  exported f and g:    $WORK/run/export
  all measures:        $WORK/run/discrepancy.json
MSG
