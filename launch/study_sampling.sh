#!/usr/bin/env bash
# The sampling study of paper Section 4.2 / Table 1 on the frozen "study" synthetic preset,
# small enough for a 2-core CPU (< 1 h from a fresh checkout); with PRESET=scenes, the
# scene-aware policies beside k = 16, w = M_n and w = 16 on the "scenes" preset:
#   generate the preset's movies + TV episodes -> ingest (both cached, reused across runs)
#   -> what the inputs alone say (python -m avjax.inputs)
#   -> pretrain the tiny model for each sampling setting and seed, the same number of steps,
#      JOBS runs at a time (each pinned to its own core when taskset exists), with the
#      discrepancy measures every EVAL_EVERY steps and the probes at the end
#   -> docs/study_sampling.md: tables (probes against random init, KLs against their noise
#      floors, S+ separation, mean ± 95% CI over seeds), the minimum detectable difference,
#      figures.
#
# Usage: bash launch/study_sampling.sh [ROOT]        (default ROOT: runs/study_sampling)
#   Relative paths (ROOT, CACHE, DOC, FIGURES) are relative to the current folder.
#   TOY=1      a toy size for tests (2 settings, 1 seed, a few steps); its report goes to
#              ROOT/study_sampling.md unless DOC is set
# Sizes (environment; defaults in brackets, TOY values in the code below):
#   PRESET     the synthetic preset: study, or scenes           [study]
#   SETTINGS   "k:w[:scenes] ..." with w=-1 for w = M_n and scenes a config.data.scenes
#              policy            [study: "1:-1 4:-1 16:-1 16:16"; scenes: "16:-1 16:16
#                                 16:-1:distinct 16:-1:adaptive"]
#   SEEDS      seeds per setting                               ["0 1 2 3 4"]
#   STEPS      training steps per run                          [300]
#   BATCH      global batch size B (a multiple of every k)     [64]
#   LR         peak learning rate                              [0.005]
#   EVAL_EVERY steps between discrepancy evaluations           [150]
#   JOBS       runs at a time                                  [2]
#   PROBE_SNIPPETS  training-title snippets the probes fit on (whole titles) [1500]
#   PRESET_ARGS  flags for python -m avjax.synthetic --preset=study (sizes only; the look
#              is frozen)                                      [""]
#   FRAMES HOP   frames per clip and log-mel hop (samples)     [4 1024]
#   RUN_ARGS   more --config.FIELD=VALUE flags for every run   [""]
#   CACHE      where the synthetic set and dataset are kept    [ROOT/data]
#   DOC FIGURES   report and its PNGs   [the repository's docs/study_sampling.md and
#              docs/NAME]
#   NAME       the report's block in DOC and figure folder    [study_sampling; scenes:
#              study_scenes]
# Rerunning skips finished runs (their discrepancy.json holds the final probes) and resumes
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
  : "${SETTINGS:=1:-1 2:-1:distinct}" "${SEEDS:=0}" "${STEPS:=4}" "${BATCH:=8}" "${EVAL_EVERY:=4}"
  : "${RUN_ARGS:=--config.discrepancy.probe_steps=20 --config.discrepancy.floor_rounds=5}"
  : "${PRESET_ARGS:=--movies=4 --shows=1 --episodes=2 --minutes=0.2}" "${VAL:=0.4}"
  : "${DOC:=$ROOT/study_sampling.md}" "${FIGURES:=$ROOT/figures}"
fi
: "${PRESET:=study}"
if [[ "$PRESET" == "scenes" ]]; then
  : "${SETTINGS:=16:-1 16:16 16:-1:distinct 16:-1:adaptive}" "${NAME:=study_scenes}"
fi
: "${SETTINGS:=1:-1 4:-1 16:-1 16:16}" "${SEEDS:=0 1 2 3 4}" "${STEPS:=300}" "${BATCH:=64}"
: "${NAME:=study_sampling}"
: "${LR:=0.005}" "${EVAL_EVERY:=150}" "${JOBS:=2}" "${PRESET_ARGS:=}" "${PROBE_SNIPPETS:=1500}"
: "${RUN_ARGS:=}"
: "${FRAMES:=4}" "${HOP:=1024}"
: "${CACHE:=$ROOT/data}"
: "${DOC:=$REPO/docs/study_sampling.md}" "${FIGURES:=$REPO/docs/$NAME}"
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
  python - "$ROOT/study.json" "$ROOT" "$DS" "$SYN" "$SETTINGS" "$SEEDS" "$STEPS" "$BATCH" "$LR" \
      "$SHORT_SIDE" "$FRAMES" "$HOP" "$(( $(date +%s) - START ))" "${TOY:-0}" \
      "$PRESET_ARGS" "$PRESET" "$NAME" <<'EOF'
import json, os, platform, sys
(out, root, ds, syn, settings, seeds, steps, batch, lr, short_side, frames, hop, wall, toy,
 preset_args, preset, name) = sys.argv[1:]
from avjax import fileio
from avjax.data import scene_sampling
manifest = json.load(open(os.path.join(ds, "manifest.json")))
titles = manifest["titles"]
split = {s: [t for t in titles if t["split"] == s] for s in ("train", "val")}
snip = {s: sum(t["num_snippets"] for t in v) for s, v in split.items()}
lengths = [t["num_snippets"] for t in titles]
nsc = [len(set(t["snippet_scenes"])) for t in titles if "snippet_scenes" in t]
labels = json.load(open(os.path.join(syn, "labels.json")))
def run_name(k, w, scenes, seed):
  suffix = "" if k == "1" else ("_wMn" if w == "-1" else f"_w{w}")
  suffix = f"_{scenes}" if scenes != "none" else suffix
  return f"k{k}{suffix}_seed{seed}"
rows = []
for setting in settings.split():
  k, w, scenes = (setting.split(":") + ["none"])[:3]
  label = "k=1" if k == "1" else f"k={k}, w={'M_n' if w == '-1' else w}"
  fallback = 0.0
  if scenes != "none":
    label = f"k={k}, {scenes} scenes"
    fallback = scene_sampling.SceneSampler(
        [t["snippet_scenes"] for t in split["train"]], int(k), scenes).fallback_rate
  rows.append(dict(label=label, k=int(k), w=int(w), scenes=scenes, fallback_rate=fallback,
                   runs=[dict(seed=int(s), workdir=os.path.join(root, "runs",
                                                                run_name(k, w, scenes, s)))
                         for s in seeds.split()]))
command = " ".join([f"python -m avjax.synthetic --preset={preset}"] + preset_args.split())
desc = (
    f"{'TOY SIZE (test only). ' if toy == '1' else ''}"
    f"Synthetic set: `{command}` ({len(titles)} titles, {len(labels['classes'])} event "
    f"classes, {min(lengths)}-{max(lengths)} snippets per title), ingested at short side "
    f"{short_side}; {len(split['train'])} training titles ({snip['train']} snippets), "
    f"{len(split['val'])} held-out titles ({snip['val']} snippets). "
    + (f"Scenes detected at ingest: {min(nsc)}-{max(nsc)} per title (mean "
       f"{sum(nsc) / len(nsc):.1f}). " if nsc else "") +
    f"Model: runlocal tiny R(2+1)D / ResNet audio encoders, d = 64, {frames} frames, "
    f"{short_side}x{short_side} crops, log-mel hop {hop}. Every run: batch B = {batch}, "
    f"{steps} steps of Adam (warm-up 1 epoch to {lr}, cosine), seeds "
    f"{seeds.replace(' ', ', ')}.")
heading = "### Results" if name == "study_sampling" else f"### Results: {name}"
fileio.write_json(out, dict(name=name, heading=heading, settings=rows, description=desc,
                            wall_seconds=int(wall),
                            machine=f"{os.cpu_count()}-core {platform.machine()} CPU",
                            dataset=ds, inputs=os.path.join(root, "inputs.json")))
EOF
}

run_one() {  # k w scenes seed slot
  local k="$1" w="$2" sc="$3" seed="$4" slot="$5"
  local name; name="$(run_name "$k" "$w" "$sc" "$seed")"
  local RUN="$ROOT/runs/$name"
  local pin=()
  if command -v taskset > /dev/null && [[ "$JOBS" -gt 1 ]]; then
    pin=(taskset -c "$(( slot % $(nproc) ))")
  fi
  log "$name: pretraining $STEPS steps (k=$k, w=$w, scenes=$sc, B=$BATCH, seed $seed)"
  local t0; t0=$(date +%s)
  # runlocal caps k at 4; the overrides below set the study's k and sizes.
  "${pin[@]}" python -m avjax.main --config="configs/pretrain.py:dataset=$DS,k=$k,w=$w,runlocal" \
    --workdir="$RUN" --config.data.k="$k" --config.data.w="$w" --config.data.scenes="$sc" \
    --config.batch_size="$BATCH" --config.total_steps="$STEPS" \
    --config.optimizer.lr_peak="$LR" \
    --config.seed="$seed" --config.data.seed="$seed" \
    --config.data.num_frames="$FRAMES" --config.data.short_side="$SHORT_SIDE" \
    --config.data.crop_size="$SHORT_SIDE" --config.data.hop="$HOP" \
    --config.evals.discrepancy="$EVAL_EVERY" \
    --config.discrepancy.probe_max_train_snippets="$PROBE_SNIPPETS" \
    --config.log_every_steps=10 --config.checkpoint_every_steps="$STEPS" $RUN_ARGS \
    > "$ROOT/$name.log" 2>&1
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    log "$name: FAILED (exit $rc), see $ROOT/$name.log"; tail -5 "$ROOT/$name.log"
    return 1
  fi
  log "$name: $(( $(date +%s) - t0 )) s; $(grep -o 'discrepancy step.*' "$ROOT/$name.log" | tail -1)"
}

write_study_json
FAILED=0
slot=0
declare -A PIDS=()
for seed in $SEEDS; do  # seeds outermost: a stopped study has every setting at equal seeds
  for kw in $SETTINGS; do
    read -r k w sc <<< "$(split_setting "$kw")"
    name="$(run_name "$k" "$w" "$sc" "$seed")"
    if finished "$ROOT/runs/$name"; then log "$name: done before, skipped"; continue; fi
    while [[ ${#PIDS[@]} -ge $JOBS ]]; do  # wait for a free slot
      for s in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$s]}" 2> /dev/null; then
          wait "${PIDS[$s]}" || FAILED=$((FAILED + 1))
          unset "PIDS[$s]"; slot=$s
        fi
      done
      [[ ${#PIDS[@]} -ge $JOBS ]] && sleep 2
    done
    for ((s = 0; s < JOBS; s++)); do [[ -z "${PIDS[$s]:-}" ]] && { slot=$s; break; }; done
    run_one "$k" "$w" "$sc" "$seed" "$slot" &
    PIDS[$slot]=$!
    write_study_json
  done
done
for s in "${!PIDS[@]}"; do wait "${PIDS[$s]}" || FAILED=$((FAILED + 1)); done

# --- Report.
write_study_json
python -m avjax.plots --study="$ROOT/study.json" --doc="$DOC" --figures="$FIGURES" || exit 1
log "report: $DOC (figures in $FIGURES); whole study $(( $(date +%s) - START )) s"
if [[ $FAILED -gt 0 ]]; then
  log "$FAILED run(s) failed; see the logs in $ROOT"
  exit 1
fi
}

main "$@"
