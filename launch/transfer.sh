#!/usr/bin/env bash
# The transfer table (docs/downstream.md, "Does pretraining transfer?"; the layout of paper
# Table 1), small enough for a 2-core CPU:
#   the synthetic downstream sets in the standard layouts (python -m avjax.synthetic
#   --downstream=SET), generated and prepared once (cached, reused across runs)
#   -> for each seed, each arm (from scratch, and the exports of the sampling study's
#      settings at that seed) and each mode (fine-tuning, linear evaluation): f fine-tuned
#      on the UCF101 and HMDB51 sets and g on the ESC-50 set, split 1, with the tiny
#      schedule below (python -m avjax.finetune_all, one process per arm, seed and mode),
#      JOBS processes at a time (each pinned to its own core when taskset exists)
#   -> every finished run goes to the table's archive (ARCHIVE, committed: JSON lines,
#      avjax/evals/archive.py)
#   -> docs/downstream.md's generated block: Table 1's layout, paired tests, Holm, from the
#      archive alone (python -m avjax.plots --transfer=ARCHIVE --doc=DOC).
#
# Usage: bash launch/transfer.sh [ROOT]        (default ROOT: runs/transfer)
#   Relative paths (ROOT, STUDY, CACHE, DOC, ARCHIVE) are relative to the current folder.
# Sizes (environment; defaults in brackets):
#   STUDY      the sampling study's ROOT (launch/study_sampling.sh): the export of setting S
#              at seed s is STUDY/runs/S_seed<s>/export         [runs/study_sampling]
#   SETTINGS   the study's settings fine-tuned, "k:w" as in the study's SETTINGS
#                                                               ["1:-1 16:-1"; "16:16" adds w = 16]
#   SEEDS      seeds: pretraining seed = fine-tuning seed       ["0 1 ... 15"]
#   SETS       downstream sets                                  ["ucf101 hmdb51 esc50"]
#   MODES      "finetune linear"                                ["finetune linear"]
#   STEPS      SGD steps per run                                [100]
#   BATCH      batch size                                       [32]
#   LR         peak learning rate (warm-up 2 epochs, cosine)    [0.05]
#   JOBS       processes at a time                              [2]
#   CACHE      where the sets are generated and prepared        [ROOT/data]
#   DOC ARCHIVE  report and archive             [docs/downstream.md, docs/transfer/runs.jsonl]
#   PRETRAIN   1: an export that STUDY does not hold is made first, seed by seed, by the
#              study script with the study's sizes (launch/study_sampling.sh, RUNS_ONLY=1,
#              ROOT=STUDY, without evaluations; a few minutes of generation the first
#              time, then about 5.5 CPU-minutes per run), and each such run's losses are
#              compared with the same run in STUDY_ARCHIVE; 0: the arm is skipped with a
#              note                                             [0]
#   STUDY_ARCHIVE  the study's committed archive          [docs/study_sampling/v3/runs.jsonl]
# A run already in the archive is skipped (the table goes on from another machine with the
# archive alone); without PRETRAIN an arm whose export does not exist yet (the study still
# running) is skipped with a note, so the script can be rerun as the study's runs finish; an
# interrupted run resumes from its checkpoints; the report is rewritten from whatever the
# archive holds.
set -uo pipefail
main() {
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS=data source "$REPO/launch/env.sh" || exit 1
set +e  # env.sh sets -e; this script checks each run's exit status itself

ROOT="${1:-runs/transfer}"
mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"

: "${STUDY:=runs/study_sampling}" "${SETTINGS:=1:-1 16:-1}" "${SEEDS:=$(seq -s ' ' 0 15)}"
: "${SETS:=ucf101 hmdb51 esc50}" "${MODES:=finetune linear}"
: "${STEPS:=100}" "${BATCH:=32}" "${LR:=0.05}" "${JOBS:=2}"
: "${CACHE:=$ROOT/data}" "${DOC:=$REPO/docs/downstream.md}"
: "${ARCHIVE:=$REPO/docs/transfer/runs.jsonl}"
: "${PRETRAIN:=0}" "${STUDY_ARCHIVE:=$REPO/docs/study_sampling/v3/runs.jsonl}"
mkdir -p "$(dirname "$ARCHIVE")"
ARCHIVE="$(cd "$(dirname "$ARCHIVE")" && pwd)/$(basename "$ARCHIVE")"
STUDY="$(cd "$STUDY" 2> /dev/null && pwd || echo "$STUDY")"
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$CACHE/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}"

log() { echo "[transfer $(date +%H:%M:%S)] $*"; }
START=$(date +%s)

# --- The schedule: the model and inputs of the study's tiny pretraining (4 frames at
# 32x32 taken 0.8 s apart from 5 fps frames, log-mel hop 1024 at 48 kHz: the exports' own
# input), the paper's augmentations and 30 / 10 test views, and a short SGD schedule.
# The same for every set, arm and mode; the seed is appended per run.
OVERRIDES="model.video.name=r2plus1d_tiny,model.audio.name=resnet_audio_tiny"
OVERRIDES+=",model.dtype=float32,data.num_frames=4,data.fps=1.25,data.scale_min=32"
OVERRIDES+=",data.scale_max=40,data.crop_size=32,data.test_short_side=32"
OVERRIDES+=",data.clip_seconds=3.2,data.hop=1024,data.shuffle_buffer=256"
OVERRIDES+=",batch_size=$BATCH,eval_batch_size=20,total_steps=$STEPS"
OVERRIDES+=",optimizer.lr_peak=$LR,optimizer.warmup_epochs=2"
OVERRIDES+=",log_every_steps=25,checkpoint_every_steps=$STEPS"
SCHEDULE="$STEPS steps of SGD (momentum 0.9, weight decay 1e-4) at batch $BATCH, lr 1e-3 -> $LR"
SCHEDULE+=" over 2 epochs then cosine; inputs as the exports were trained (4 frames 0.8 s"
SCHEDULE+=" apart, 32x32 crops of a shorter side jittered in [32, 40], flip, colour jitter;"
SCHEDULE+=" 3.2-s log-mel clips, hop 1024, masks of up to 50%); test on 30 (video) or 10"
SCHEDULE+=" (audio) views per clip"

# --- Data: each set generated and prepared once.
declare -A DATA=() RAW=()
for set in $SETS; do
  RAW[$set]="$CACHE/synthetic_$set"
  DATA[$set]="$CACHE/$set"
  if [[ ! -f "${RAW[$set]}/labels.json" ]]; then
    log "generating ${RAW[$set]} (python -m avjax.synthetic --downstream=$set)"
    python -m avjax.synthetic --downstream="$set" --output="${RAW[$set]}" --workers="$JOBS" \
      > "$CACHE.$set.gen.log" 2>&1 || { log "FAILED, see $CACHE.$set.gen.log"; exit 1; }
  fi
  if [[ ! -f "${DATA[$set]}/manifest.json" ]]; then
    log "preparing ${DATA[$set]}"
    python -m avjax.prepare_downstream --dataset="$set" --root="${RAW[$set]}" \
      --output="${DATA[$set]}" --fps=5 --short_side=32 --workers="$JOBS" \
      > "$CACHE.$set.prepare.log" 2>&1 || { log "FAILED, see $CACHE.$set.prepare.log"; exit 1; }
  fi
done
DATA_SECONDS=$(( $(date +%s) - START ))

# --- The archive's header, and the names of the arms.
INITS="scratch"
declare -A NAME_OF=()  # "k:w" -> the study's setting name
for kw in $SETTINGS; do
  NAME_OF[$kw]="$(python -c "import sys; from avjax.evals import study
print(study.parse_setting(sys.argv[1])['name'])" "$kw")" || exit 1
  INITS+=" ${NAME_OF[$kw]}"
done
python -c "import sys, json; from avjax.evals import archive, transfer_table
(path, sets, inits, seeds, modes, overrides, schedule, secs, cache) = sys.argv[1:]
sets = sets.split()
labels = {s: json.load(open(f'{cache}/synthetic_{s}/labels.json')) for s in sets}
shift = labels[sets[0]]['shift']
shift = ('against the ' + labels[sets[0]]['base_preset'] + ' preset: '
         + ', '.join(f'{k}={v}' for k, v in shift.items()))
archive.put_header(path, transfer_table.header(
    data={s: f'{cache}/{s}' for s in sets}, settings=inits.split()[1:],
    seeds=seeds.split(), sets=sets, modes=modes.split(), overrides=overrides,
    schedule=schedule, shift=shift, data_seconds=int(secs)))" \
  "$ARCHIVE" "$SETS" "$INITS" "$SEEDS" "$MODES" "$OVERRIDES" "$SCHEDULE" "$DATA_SECONDS" \
  "$CACHE" || exit 1

missing_sets() {  # init seed mode: the sets not yet in the archive
  python -c "import sys; from avjax.evals import archive, transfer_table
path, init, seed, mode, *sets = sys.argv[1:]
done = {archive.key(r) for r in archive.load(path)[1]}  # the archive read once
print(' '.join(s for s in sets
               if ('run', transfer_table.setting(s, mode, init), int(seed)) not in done))
" "$ARCHIVE" "$@" $SETS
}

run_arm() {  # init seed mode slot: the missing sets of one arm, seed and mode, one process
  local init="$1" seed="$2" mode="$3" slot="$4"
  local todo; todo="$(missing_sets "$init" "$seed" "$mode")"
  [[ -z "$todo" ]] && return 0
  local export="" name="${init}_seed$seed"
  if [[ "$init" != "scratch" ]]; then
    export="$STUDY/runs/$name/export"
    if [[ ! -f "$export/model_config.json" ]]; then
      log "$name $mode: no export yet ($export), skipped"
      return 0
    fi
  fi
  local roots="" set
  for set in $todo; do roots+="${roots:+,}$set=${DATA[$set]}"; done
  local work="$ROOT/runs/$name/$mode"
  mkdir -p "$work"
  log "$name $mode: $todo"
  local t0; t0=$(date +%s)
  local TIMEFORMAT="%R %U %S"
  { time pinned "$slot" python -m avjax.finetune_all --init="$export" --roots="$roots" \
      --workdir="$work" --mode="$mode" --splits=1 --name="$name" \
      --overrides="$OVERRIDES,seed=$seed,data.seed=$seed" > "$work.log" 2>&1 ; } \
    2> "$work.time"
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    log "$name $mode: FAILED (exit $rc), see $work.log"; tail -5 "$work.log"
    return 1
  fi
  local wall user sys
  read -r wall user sys < <(tail -1 "$work.time")
  local set_
  for set_ in $todo; do  # the process's time, split evenly among its sets
    python -c "import sys; from avjax.evals import archive, transfer_table
path, results, s, mode, init, seed, export, wall, user, sys_, n = sys.argv[1:]
n = len(n.split())
archive.put(path, transfer_table.run_record(
    results, dataset=s, mode=mode, init=init, seed=int(seed), export=export,
    wall_seconds=round(float(wall) / n, 1),
    cpu_seconds=round((float(user) + float(sys_)) / n, 1)))" \
      "$ARCHIVE" "$work/$set_/split1/results.json" "$set_" "$mode" "$init" "$seed" "$export" \
      "$wall" "$user" "$sys" "$todo" || return 1
  done
  log "$name $mode: $(( $(date +%s) - t0 )) s ($todo)"
}

pretrain_seed() {  # seed: the seed's missing exports, made by the study script, checked
  local seed="$1" kw name mode need=""
  for kw in $SETTINGS; do
    name="${NAME_OF[$kw]}"
    [[ -f "$STUDY/runs/${name}_seed$seed/export/model_config.json" ]] && continue
    for mode in $MODES; do  # only when the arm still has runs to do
      [[ -n "$(missing_sets "$name" "$seed" "$mode")" ]] && { need+=" $kw"; break; }
    done
  done
  [[ -z "$need" ]] && return 0
  wait_jobs  # the cores go to the pretraining runs
  log "seed $seed: pretraining${need} (launch/study_sampling.sh, log $STUDY/pretrain_seed$seed.log)"
  mkdir -p "$STUDY"
  env -u STEPS -u BATCH -u LR -u CACHE -u DOC -u MODES -u SETS SETTINGS="${need# }" \
    SEEDS="$seed" RUNS_ONLY=1 ARCHIVE="$STUDY/pretraining.jsonl" FIGURES="$STUDY/figures" \
    AVJAX_SKIP_INSTALL=1 bash "$REPO/launch/study_sampling.sh" "$STUDY" \
    > "$STUDY/pretrain_seed$seed.log" 2>&1 || {
      log "seed $seed: pretraining FAILED, see $STUDY/pretrain_seed$seed.log"; return 1; }
  for kw in $need; do  # the same run as the study's, or the log says by how much it is not
    python -c "import sys; from avjax.evals import archive, study
new, old, kw, seed = sys.argv[1:]
name = study.parse_setting(kw)['name']
try:
  d = archive.reproduction(new, old, name, int(seed))
except ValueError as e:
  sys.exit(print(f'{e}: NOT the study\'s run'))
print(f'{name} seed {seed}: ' + ('not in the study archive ' + old if d is None else
      f'largest relative loss difference from the study archive\'s run {d:.1e}'
      + ('' if d <= 1e-4 else ' (NOT the study\'s run)')))" \
      "$STUDY/pretraining.jsonl" "$STUDY_ARCHIVE" "$kw" "$seed" | while read -r line; do
        log "$line"; done
  done
}

source "$REPO/launch/jobs.sh"
for seed in $SEEDS; do  # seeds outermost: a stopped table has every arm at equal seeds
  if [[ "$PRETRAIN" == "1" ]]; then pretrain_seed "$seed" || FAILED=$((FAILED + 1)); fi
  for init in $INITS; do
    for mode in $MODES; do
      start_job run_arm "$init" "$seed" "$mode"
    done
  done
done
wait_jobs

# --- Report, from the archive alone.
python -m avjax.plots --transfer="$ARCHIVE" --doc="$DOC" || exit 1
log "report: $DOC (archive $ARCHIVE); $(( $(date +%s) - START )) s"
if [[ $FAILED -gt 0 ]]; then
  log "$FAILED arm(s) failed; see the logs in $ROOT/runs"
  exit 1
fi
}

main "$@"
