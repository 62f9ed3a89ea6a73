#!/usr/bin/env bash
# The sampling study of paper Section 4.2 / Table 1 on a frozen synthetic preset, small
# enough for a 2-core CPU; by default study v3 on the "genres" preset (docs/study_sampling.md):
#   generate the preset's movies + TV episodes -> ingest (both cached, reused across runs)
#   -> what the inputs alone say (python -m avjax.inputs)
#   -> pretrain the tiny model for each sampling setting and seed, the same number of steps,
#      JOBS runs at a time (each pinned to its own core when taskset exists; the first one
#      alone while the compile cache has no update step), with the
#      discrepancy measures every EVAL_EVERY steps and the probes at the end; and once per
#      seed the random-initialisation baseline (python -m avjax.discrepancy --baseline:
#      BatchNorm recalibrated or not, raw-input probes on the same snippets)
#   -> every finished run and baseline goes to the study's archive (ARCHIVE, committed: a
#      few hundred KB of JSON lines, avjax/evals/archive.py)
#   -> docs/study_sampling.md: the tables (paired tests, Holm), figures, from the archive
#      alone (python -m avjax.plots --study=ARCHIVE).
#
# Usage: bash launch/study_sampling.sh [ROOT]        (default ROOT: runs/study_sampling)
#   Relative paths (ROOT, CACHE, DOC, FIGURES, ARCHIVE) are relative to the current folder.
#   TOY=1      a toy size for tests (2 settings, 2 seeds, 4 steps, f and g of one stage); its
#              report and archive go under ROOT unless DOC and ARCHIVE are set
# Sizes (environment; defaults in brackets, TOY values in the code below):
#   PRESET     the synthetic preset: genres (study v3), study (v2) or scenes   [genres]
#   SETTINGS   "k:w[:scenes] ..." with w=-1 for w = M_n and scenes a config.data.scenes
#              policy     ["1:-1 4:-1 16:-1 16:16"; scenes: "16:-1 16:16 16:-1:distinct
#                          16:-1:adaptive"]
#   SEEDS      seeds, each run of every setting and one baseline ["0 1 ... 19"; v2: "0 ... 4"]
#   STEPS      training steps per run                          [300]
#   BATCH      global batch size B (a multiple of every k)     [64]
#   LR         peak learning rate                              [0.005]
#   EVAL_EVERY steps between discrepancy evaluations           [100; v2: 150]
#   JOBS       runs at a time                                  [2]
#   PROBE_SNIPPETS  training-title snippets the probes fit on (whole titles) [1500]
#   PRESET_ARGS  flags for python -m avjax.synthetic --preset=PRESET (sizes only; the look
#              is frozen)                                      [""]
#   FRAMES HOP   frames per clip and log-mel hop (samples)     [4 1024]
#   RUN_ARGS   more --config.FIELD=VALUE flags for every run   [""]
#   CACHE      where the synthetic set and dataset are kept    [ROOT/data]
#   NAME       the report's block in DOC                       [study_v3; study_sampling;
#                                                               study_scenes]
#   DOC FIGURES ARCHIVE   report, its PNGs and the archive [docs/study_sampling.md,
#              docs/study_sampling/v3 (v2: docs/NAME), FIGURES/runs.jsonl]
#   RUNS_ONLY  1: the pretraining runs alone, without evaluations, baselines or report, each
#              archived with its losses only, in ROOT/pretraining.jsonl by default (the
#              exports that launch/transfer.sh fine-tunes; evaluations do not change
#              training)                                         [0]
# A run or baseline already in the archive is skipped (a study goes on from another machine
# with the archive alone); an interrupted run resumes from its checkpoints; the report is
# rewritten from whatever the archive holds.
set -uo pipefail
main() {
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS=data source "$REPO/launch/env.sh" || exit 1
set +e  # env.sh sets -e; this script checks each run's exit status itself

ROOT="${1:-runs/study_sampling}"
mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"

if [[ "${TOY:-0}" == "1" ]]; then
  : "${SETTINGS:=1:-1 2:-1}" "${SEEDS:=0 1}" "${STEPS:=4}" "${BATCH:=8}" "${EVAL_EVERY:=4}"
  : "${RUN_ARGS:=--config.discrepancy.probe_steps=20 --config.discrepancy.floor_rounds=5}"
  MICRO=",micro"  # configs/pretrain.py: f and g of one stage
  : "${PRESET_ARGS:=--movies=6 --shows=1 --episodes=2 --minutes=0.2}" "${VAL:=0.4}"
  : "${DOC:=$ROOT/study_sampling.md}" "${FIGURES:=$ROOT/figures}"
fi
: "${PRESET:=genres}"
case "$PRESET" in
  genres) : "${NAME:=study_v3}" "${FIGURES:=$REPO/docs/study_sampling/v3}"
          : "${SEEDS:=$(seq -s ' ' 0 19)}" ;;
  scenes) : "${SETTINGS:=16:-1 16:16 16:-1:distinct 16:-1:adaptive}" "${NAME:=study_scenes}" ;;
  study) : "${NAME:=study_sampling}" "${EVAL_EVERY:=150}" ;;
esac
: "${SETTINGS:=1:-1 4:-1 16:-1 16:16}" "${SEEDS:=0 1 2 3 4}" "${STEPS:=300}" "${BATCH:=64}"
: "${NAME:=study_sampling}"
: "${LR:=0.005}" "${EVAL_EVERY:=100}" "${JOBS:=2}" "${PRESET_ARGS:=}" "${PROBE_SNIPPETS:=1500}"
: "${RUN_ARGS:=}"
: "${FRAMES:=4}" "${HOP:=1024}"
: "${CACHE:=$ROOT/data}"
: "${DOC:=$REPO/docs/study_sampling.md}" "${FIGURES:=$REPO/docs/$NAME}"
: "${RUNS_ONLY:=0}"
if [[ "$RUNS_ONLY" == "1" ]]; then
  EVAL_EVERY=0  # a third of a run's time, not needed here
  : "${ARCHIVE:=$ROOT/pretraining.jsonl}"  # loss-only records, never the study's archive
fi
: "${ARCHIVE:=$FIGURES/runs.jsonl}"
mkdir -p "$(dirname "$ARCHIVE")"
ARCHIVE="$(cd "$(dirname "$ARCHIVE")" && pwd)/$(basename "$ARCHIVE")"
# Compiled steps are the same for every run: compile once, reuse from disk.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$CACHE/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}"

log() { echo "[study $(date +%H:%M:%S)] $*"; }
START=$(date +%s)

# --- Data: the preset, generated and ingested once per set of sizes.
SHORT_SIDE=32; : "${VAL:=0.2}"  # what the preset is made for (avjax/synthetic/presets.py)
SET="$PRESET$(echo "$PRESET_ARGS" | tr -cd 'a-z0-9.=' | tr '=' '_')"
SYN="$CACHE/synthetic_$SET"
DS="$CACHE/dataset_${SET}_val$VAL"
if [[ ! -f "$SYN/labels.json" ]]; then
  log "generating $SYN (python -m avjax.synthetic --preset=$PRESET $PRESET_ARGS)"
  # shellcheck disable=SC2086
  python -m avjax.synthetic --output="$SYN" --preset="$PRESET" $PRESET_ARGS --seed=0 \
    --workers="$JOBS" || exit 1
fi
if [[ ! -f "$DS/ingest_report.json" ]]; then
  log "ingesting into $DS"
  python -m avjax.ingest --input="$SYN" --output="$DS" --short_side="$SHORT_SIDE" \
    --val_fraction="$VAL" --workers="$JOBS" --noprogress || exit 1
fi
if [[ ! -f "$ROOT/inputs.json" ]]; then
  log "what the inputs alone say"
  python -m avjax.inputs --dataset="$DS" --short_side="$SHORT_SIDE" --crop_size="$SHORT_SIDE" \
    --num_frames="$FRAMES" --hop="$HOP" --output="$ROOT/inputs.json" || exit 1
fi

# --- Runs.
run_name() {  # k w scenes seed
  local w="_wMn"; [[ "$2" != "-1" ]] && w="_w$2"; [[ "$1" == "1" ]] && w=""
  [[ "$3" != "none" ]] && w="_$3"
  echo "k$1${w}_seed$4"
}
split_setting() {  # "k:w[:scenes]" -> k w scenes
  local k w sc; IFS=: read -r k w sc <<< "$1"; echo "$k" "$w" "${sc:-none}"
}
archived() {  # kind setting seed: is the record in the archive?
  python -c "import sys; from avjax.evals import archive
sys.exit(0 if archive.has(*sys.argv[1:4], int(sys.argv[4])) else 1)" "$ARCHIVE" "$@"
}
record() {  # kind workdir setting seed k w scenes wall: puts a finished run or baseline
  python -c "import sys; from avjax.evals import archive
path, evaluated, kind, workdir, setting, seed, k, w, scenes, wall = sys.argv[1:]
if kind == 'run':
  make = archive.run_record if evaluated == '1' else archive.loss_record
  r = make(workdir, setting=setting, seed=int(seed), k=int(k), w=int(w), scenes=scenes,
           wall_seconds=int(wall))
else:
  r = archive.baseline_record(workdir, seed=int(seed))
  r['wall_seconds'] = int(wall)
archive.put(path, r)" "$ARCHIVE" "$(( RUNS_ONLY == 0 ))" "$@"
}
write_header() {  # the study's header record: data, settings, sizes, what the inputs say
  python -c "import sys; from avjax.evals import archive, study
(path, ds, syn, settings, seeds, steps, batch, lr, short_side, frames, hop, toy, preset_args,
 preset, name, inputs, data_seconds) = sys.argv[1:]
archive.put_header(path, study.header(
    dataset=ds, synthetic=syn, settings=settings.split(), seeds=[int(x) for x in seeds.split()],
    steps=int(steps), batch=int(batch), lr=float(lr), short_side=int(short_side),
    frames=int(frames), hop=int(hop), toy=toy == '1', preset=preset,
    preset_args=preset_args, name=name, inputs=inputs, data_seconds=int(data_seconds)))" \
    "$ARCHIVE" "$DS" "$SYN" "$SETTINGS" "$SEEDS" "$STEPS" "$BATCH" "$LR" "$SHORT_SIDE" \
    "$FRAMES" "$HOP" "${TOY:-0}" "$PRESET_ARGS" "$PRESET" "$NAME" "$ROOT/inputs.json" \
    "$DATA_SECONDS"
}

run_one() {  # k w scenes seed slot
  local k="$1" w="$2" sc="$3" seed="$4" slot="$5"
  local name; name="$(run_name "$k" "$w" "$sc" "$seed")"
  local RUN="$ROOT/runs/$name"
  log "$name: pretraining $STEPS steps (k=$k, w=$w, scenes=$sc, B=$BATCH, seed $seed)"
  local t0; t0=$(date +%s)
  # runlocal caps k at 4; the overrides below set the study's k and sizes. The seed sets the
  # initialisation, the sampler stream and the probe's training titles: the arms of a seed
  # share the initialisation and the probe snippets (paired), and the seed's baseline
  # (random init) is evaluated once, not in every run.
  pinned "$slot" python -m avjax.main \
    --config="configs/pretrain.py:dataset=$DS,k=$k,w=$w,runlocal${MICRO:-}" \
    --workdir="$RUN" --config.data.k="$k" --config.data.w="$w" --config.data.scenes="$sc" \
    --config.batch_size="$BATCH" --config.total_steps="$STEPS" \
    --config.optimizer.lr_peak="$LR" \
    --config.seed="$seed" --config.data.seed="$seed" --config.discrepancy.seed="$seed" \
    --config.data.num_frames="$FRAMES" --config.data.short_side="$SHORT_SIDE" \
    --config.data.crop_size="$SHORT_SIDE" --config.data.hop="$HOP" \
    --config.evals.discrepancy="$EVAL_EVERY" \
    --config.discrepancy.probe_max_train_snippets="$PROBE_SNIPPETS" \
    --config.discrepancy.random_init=false --config.discrepancy.random_bn=false \
    --config.log_every_steps=10 --config.checkpoint_every_steps="$STEPS" $RUN_ARGS \
    > "$ROOT/$name.log" 2>&1
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    log "$name: FAILED (exit $rc), see $ROOT/$name.log"; tail -5 "$ROOT/$name.log"
    return 1
  fi
  local setting; setting="$(run_name "$k" "$w" "$sc" x)"; setting="${setting%_seedx}"
  record run "$RUN" "$setting" "$seed" "$k" "$w" "$sc" "$(( $(date +%s) - t0 ))" || return 1
  log "$name: $(( $(date +%s) - t0 )) s; $(grep -o 'discrepancy step.*' "$ROOT/$name.log" | tail -1)"
}

baseline_one() {  # seed workdir slot: the seed's random initialisation, once
  local seed="$1" RUN="$2" slot="$3"
  local t0; t0=$(date +%s)
  for _ in $(seq 360); do [[ -f "$RUN/config.json" ]] && break; sleep 5; done
  log "baseline_seed$seed: random initialisation of $(basename "$RUN")"
  pinned "$slot" python -m avjax.discrepancy --workdir="$RUN" --baseline \
    > "$ROOT/baseline_seed$seed.log" 2>&1 || {
    log "baseline_seed$seed: FAILED, see $ROOT/baseline_seed$seed.log"; return 1; }
  record baseline "$RUN" "random init" "$seed" 0 0 none "$(( $(date +%s) - t0 ))" || return 1
  log "baseline_seed$seed: $(( $(date +%s) - t0 )) s"
}

DATA_SECONDS=$(( $(date +%s) - START ))
write_header || exit 1
source "$REPO/launch/jobs.sh"
for seed in $SEEDS; do  # seeds outermost: a stopped study has every setting at equal seeds
  first=""
  for kw in $SETTINGS; do
    read -r k w sc <<< "$(split_setting "$kw")"
    name="$(run_name "$k" "$w" "$sc" "$seed")"
    setting="$(run_name "$k" "$w" "$sc" x)"; setting="${setting%_seedx}"
    [[ -z "$first" ]] && first="$ROOT/runs/$name"
    if archived run "$setting" "$seed"; then log "$name: in the archive, skipped"; continue; fi
    # With no update step in the compile cache yet, the first run goes alone: the runs after
    # it read its compiled programs instead of compiling the same ones at the same time.
    cold=1; compgen -G "$JAX_COMPILATION_CACHE_DIR/jit_update_step-*" > /dev/null && cold=""
    start_job run_one "$k" "$w" "$sc" "$seed"
    [[ -n "$cold" ]] && wait_jobs
  done
  [[ "${RUNS_ONLY:-0}" == "1" ]] && continue
  if archived baseline "random init" "$seed"; then continue; fi
  start_job baseline_one "$seed" "$first"
done
wait_jobs
if [[ "${RUNS_ONLY:-0}" == "1" ]]; then
  log "runs in $ROOT/runs (archive $ARCHIVE); $(( $(date +%s) - START )) s"
  exit $(( FAILED > 0 ))
fi

# --- Report, from the archive alone.
python -m avjax.plots --study="$ARCHIVE" --doc="$DOC" --figures="$FIGURES" || exit 1
log "report: $DOC (figures in $FIGURES, archive $ARCHIVE); whole study $(( $(date +%s) - START )) s"
if [[ $FAILED -gt 0 ]]; then
  log "$FAILED run(s) failed; see the logs in $ROOT"
  exit 1
fi
}

main "$@"
