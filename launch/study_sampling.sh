#!/usr/bin/env bash
# The sampling study of paper Section 4.2 / Table 1, small enough for a 2-core CPU (< 1 h):
#   generate synthetic movies + TV episodes -> ingest (both cached, reused across runs)
#   -> pretrain the tiny model for each sampling setting and seed, the same number of steps,
#      with the discrepancy measures every EVAL_EVERY steps and the linear probe at the end
#   -> docs/study_sampling.md: Table 1 layout (probe accuracy, mean ± std over seeds, plus
#      the three KLs) and figures (loss curves, divergences against step, densities).
#
# Usage: bash launch/study_sampling.sh [ROOT]        (default ROOT: runs/study_sampling)
#   Relative paths (ROOT, CACHE, DOC, FIGURES) are relative to the current folder.
#   TOY=1      a toy size for tests (2 settings, 1 seed, a few steps; about a minute); its
#              report goes to ROOT/study_sampling.md unless DOC is set
# Sizes (environment; defaults in brackets, TOY values in the code below):
#   SETTINGS   "k:w ..." with w=-1 for w = M_n                ["1:-1 4:-1 16:-1 16:16"]
#   SEEDS      seeds per setting                               ["0 1 2"]
#   STEPS      training steps per run                          [400]
#   BATCH      global batch size B (a multiple of every k)     [32]
#   EVAL_EVERY steps between discrepancy evaluations           [100]
#   MOVIES SHOWS EPISODES MINUTES ARTIFACTS   synthetic set    [40 4 3 2.0 3.0]
#   SHORT_SIDE CROP FRAMES HOP VAL   ingest size, crop, frames, mel hop (samples), held-out
#              fraction                                        [48 32 4 1024 0.25]
#   CACHE      where the synthetic set and dataset are kept    [ROOT/data]
#   DOC FIGURES   report and its PNGs   [the repository's docs/study_sampling.md and
#              docs/study_sampling]
# Rerunning skips finished runs (their discrepancy.json holds the final probe) and resumes
# interrupted ones from their checkpoints; the report is rewritten from whatever finished.
set -uo pipefail
main() {
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS=data source "$REPO/launch/env.sh" || exit 1
set +e  # env.sh sets -e; this script checks each run's exit status itself

ROOT="${1:-runs/study_sampling}"
mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"

if [[ "${TOY:-0}" == "1" ]]; then
  : "${SETTINGS:=1:-1 2:2}" "${SEEDS:=0}" "${STEPS:=4}" "${BATCH:=8}" "${EVAL_EVERY:=2}"
  : "${MOVIES:=4}" "${SHOWS:=1}" "${EPISODES:=2}" "${MINUTES:=0.3}"
  : "${SHORT_SIDE:=32}" "${CROP:=24}" "${FRAMES:=4}" "${HOP:=1024}" "${VAL:=0.4}"
  : "${DOC:=$ROOT/study_sampling.md}" "${FIGURES:=$ROOT/figures}"
fi
: "${SETTINGS:=1:-1 4:-1 16:-1 16:16}" "${SEEDS:=0 1 2}" "${STEPS:=400}" "${BATCH:=32}"
: "${EVAL_EVERY:=100}"
: "${MOVIES:=40}" "${SHOWS:=4}" "${EPISODES:=3}" "${MINUTES:=2.0}" "${ARTIFACTS:=3.0}"
: "${SHORT_SIDE:=48}" "${CROP:=32}" "${FRAMES:=4}" "${HOP:=1024}" "${VAL:=0.25}"
: "${CACHE:=$ROOT/data}"
: "${DOC:=$REPO/docs/study_sampling.md}" "${FIGURES:=$REPO/docs/study_sampling}"
# Compiled steps are the same for every run: compile once, reuse from disk.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$CACHE/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}"

log() { echo "[study $(date +%H:%M:%S)] $*"; }
START=$(date +%s)

# --- Data: generated and ingested once per set of parameters.
SET="m${MOVIES}_s${SHOWS}x${EPISODES}_${MINUTES}min_a${ARTIFACTS}"
SYN="$CACHE/synthetic_$SET"
DS="$CACHE/dataset_${SET}_ss${SHORT_SIDE}_val${VAL}"
if [[ ! -f "$SYN/labels.json" ]]; then
  log "generating $SYN"
  python -m avjax.synthetic --output="$SYN" --movies="$MOVIES" --shows="$SHOWS" \
    --episodes="$EPISODES" --minutes="$MINUTES" --artifact_strength="$ARTIFACTS" --seed=0 \
    --width=160 --height=90 || exit 1
fi
if [[ ! -f "$DS/manifest.json" ]] || \
   [[ "$(python -c "import json,sys; print(len(json.load(open(sys.argv[1]))['titles']))" \
        "$DS/manifest.json")" != "$((MOVIES + SHOWS * EPISODES))" ]]; then
  log "ingesting into $DS"
  python -m avjax.ingest --input="$SYN" --output="$DS" --short_side="$SHORT_SIDE" \
    --val_fraction="$VAL" --workers=2 || exit 1
fi

# --- Runs.
run_name() {  # k w seed
  local w="_wMn"; [[ "$2" != "-1" ]] && w="_w$2"; [[ "$1" == "1" ]] && w=""
  echo "k$1${w}_seed$3"
}
finished() {  # workdir: its discrepancy.json has the final step's probe
  python - "$1" "$STEPS" <<'EOF'
import json, os, sys
path = os.path.join(sys.argv[1], "discrepancy.json")
ok = os.path.exists(path) and any(
    e["step"] == int(sys.argv[2]) and "probe" in e for e in json.load(open(path))["steps"])
sys.exit(0 if ok else 1)
EOF
}

write_study_json() {  # the runs, the settings in words, the wall time so far
  python - "$ROOT/study.json" "$ROOT" "$DS" "$SETTINGS" "$SEEDS" "$STEPS" "$BATCH" \
      "$MOVIES" "$SHOWS" "$EPISODES" "$MINUTES" "$ARTIFACTS" "$SHORT_SIDE" "$CROP" "$FRAMES" "$HOP" \
      "$(( $(date +%s) - START ))" "${TOY:-0}" <<'EOF'
import json, os, platform, sys
(out, root, ds, settings, seeds, steps, batch, movies, shows, episodes, minutes, artifacts,
 short_side, crop, frames, hop, wall, toy) = sys.argv[1:]
from avjax import fileio
manifest = json.load(open(os.path.join(ds, "manifest.json")))
titles = manifest["titles"]
split = {s: [t for t in titles if t["split"] == s] for s in ("train", "val")}
snip = {s: sum(t["num_snippets"] for t in v) for s, v in split.items()}
def name(k, w, seed):
  suffix = "" if k == "1" else ("_wMn" if w == "-1" else f"_w{w}")
  return f"k{k}{suffix}_seed{seed}"
rows = []
for kw in settings.split():
  k, w = kw.split(":")
  label = "k=1" if k == "1" else f"k={k}, w={'M_n' if w == '-1' else w}"
  rows.append(dict(label=label, k=int(k), w=int(w), runs=[
      dict(seed=int(s), workdir=os.path.join(root, "runs", name(k, w, s)))
      for s in seeds.split()]))
desc = (
    f"{'TOY SIZE (test only). ' if toy == '1' else ''}"
    f"Synthetic set: {movies} movies + {shows} shows x {episodes} episodes of ~{minutes} min "
    f"(artifact strength {artifacts}, 10 event classes), ingested at short side "
    f"{short_side}; {len(split['train'])} training titles ({snip['train']} snippets), "
    f"{len(split['val'])} held-out titles ({snip['val']} snippets). "
    f"Model: runlocal tiny R(2+1)D / ResNet audio encoders, d = 64, {frames} frames, "
    f"{crop}x{crop} crops, log-mel hop {hop}. Every run: batch B = {batch}, {steps} steps of Adam "
    f"(warm-up 1 epoch, cosine), seeds {seeds.replace(' ', ', ')}. "
    f"Probe: logistic regression on pooled f / g (and z) of the training titles' snippets, "
    f"top-1 on the held-out titles' snippets.")
fileio.write_json(out, dict(settings=rows, description=desc, wall_seconds=int(wall),
                            machine=f"{os.cpu_count()}-core {platform.machine()} CPU",
                            dataset=ds))
EOF
}

write_study_json
FAILED=()
for kw in $SETTINGS; do
  for seed in $SEEDS; do
    k="${kw%%:*}"; w="${kw##*:}"
    name="$(run_name "$k" "$w" "$seed")"
    RUN="$ROOT/runs/$name"
    if finished "$RUN"; then log "$name: done before, skipped"; continue; fi
    log "$name: pretraining $STEPS steps (k=$k, w=$w, B=$BATCH, seed $seed)"
    t0=$(date +%s)
    # runlocal caps k at 4; the overrides below set the study's k and sizes.
    python -m avjax.main --config="configs/pretrain.py:dataset=$DS,k=$k,w=$w,runlocal" \
      --workdir="$RUN" --config.data.k="$k" --config.data.w="$w" \
      --config.batch_size="$BATCH" --config.total_steps="$STEPS" \
      --config.seed="$seed" --config.data.seed="$seed" \
      --config.data.num_frames="$FRAMES" --config.data.short_side="$SHORT_SIDE" \
      --config.data.crop_size="$CROP" --config.data.hop="$HOP" \
      --config.evals.discrepancy="$EVAL_EVERY" \
      --config.log_every_steps=5 --config.checkpoint_every_steps="$STEPS" \
      > "$ROOT/$name.log" 2>&1
    rc=$?
    if [[ $rc -ne 0 ]]; then
      FAILED+=("$name")
      log "$name: FAILED (exit $rc), see $ROOT/$name.log"; tail -5 "$ROOT/$name.log"
    else
      log "$name: $(( $(date +%s) - t0 )) s; $(grep -o 'discrepancy step.*' "$ROOT/$name.log" | tail -1)"
    fi
    write_study_json
  done
done

# --- Report.
write_study_json
python -m avjax.plots --study="$ROOT/study.json" --doc="$DOC" --figures="$FIGURES" || exit 1
log "report: $DOC (figures in $FIGURES); whole study $(( $(date +%s) - START )) s"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  log "failed runs: ${FAILED[*]}"
  exit 1
fi
}

main "$@"
