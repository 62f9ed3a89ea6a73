#!/usr/bin/env bash
# avjax's jitted training step against the PyTorch reference on one GPU, in one call of at
# most ~8 minutes: PyTorch at batch 64, avjax with Flax's BatchNorm at 64, avjax with the
# fused BatchNorm (model.norm=fused, avjax/models/fused_norm.py) at 64 and 128; the paper's
# shapes (16x158x158 video, 96x300 log-mel), bf16, 15 timed steps each. Prints a markdown
# table (samples/s, x PyTorch, step ms, TFLOP/s, compile/warm-up s, peak memory) and writes
# it to $1 (default: stdout only), ready for docs/benchmarks.md.
#
#   bash benchmarks/run_gpu.sh [TABLE.md]
#   RUNS="torch:64 fused:64 fused:128 fused:256" bash benchmarks/run_gpu.sh   # other runs
#   CONFIG_ARGS=remat=convs bash benchmarks/run_gpu.sh       # avjax runs with remat=convs
#   DRY=1 bash benchmarks/run_gpu.sh /tmp/t.md    # CPU dry run of this script, tiny sizes
#
# RUNS: space-separated NAME:BATCH, NAME one of torch (benchmarks/peer_torch.py), flax,
# fused (`python -m avjax.benchmark step --config.model.norm=NAME`). One process per run,
# each under its own time limit and all under TOTAL_LIMIT_S: a run that would start with
# too little time left is skipped and shows as "skipped" in the table.
#
# Budget on an H100/H200: each avjax run traces and compiles the step once (60-100 s),
# then 3 warm-up + 15 timed steps (< 10 s); PyTorch spends ~10-30 s in cuDNN autotuning.
# Four runs: ~5-7 min. The order puts the runs the comparison needs first.
#
# Needs JAX (GPU), Flax, Optax, Orbax, chex, absl, PyYAML, ml_collections, torch and
# torchvision; no TensorFlow. Where ml_collections is missing (pure Python; the
# accelerator hosts lack it), carry its wheel in .whl/:
#   pip download --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0
# and this script installs it into a temporary --target directory (its needs, absl-py and
# PyYAML, are there). With DRY=1 the same script runs on CPU: tiny avjax encoders
# (configs/step_benchmark.py:runlocal), PyTorch on CPU at 8x56x56, batches 2 and 4, 3 steps: a
# check that every part runs and the table is written, not a measurement.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_FILE="${1:-}"
PYTHON="${PYTHON:-python3}"
DRY="${DRY:-0}"
RUNS="${RUNS:-torch:64 fused:64 flax:64 fused:128}"
STEPS="${STEPS:-15}"
# Time limits (s): the whole script, each avjax run, each PyTorch run. CPU (DRY=1)
# compiles slowly on a shared 2-core machine: more there.
if [[ "$DRY" == 1 ]]; then limits=(1800 600 400); else limits=(470 170 110); fi
TOTAL_LIMIT_S="${TOTAL_LIMIT_S:-${limits[0]}}"
JAX_LIMIT_S="${JAX_LIMIT_S:-${limits[1]}}"
TORCH_LIMIT_S="${TORCH_LIMIT_S:-${limits[2]}}"
CONFIG_ARGS="${CONFIG_ARGS:-}"    # after step_benchmark.py's colon, e.g. remat=convs
JAX_ARGS="${JAX_ARGS:-}"          # more flags for every avjax run
TORCH_ARGS="${TORCH_ARGS:-}"      # more flags for every PyTorch run
WORK="$(mktemp -d)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Batch 64 with norm=flax keeps ~1.5 GiB of residuals per sample: let XLA take most of
# the card rather than its default 75%.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"

if [[ "$DRY" == 1 ]]; then
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
  CONFIG_ARGS="runlocal${CONFIG_ARGS:+,$CONFIG_ARGS}"
  STEPS=3
  TORCH_ARGS="--device=cpu --frames=8 --crop=56 --audio_frames=100 --warmup=1 $TORCH_ARGS"
fi
deadline=$((SECONDS + TOTAL_LIMIT_S))

if ! "$PYTHON" -c "import ml_collections" 2>/dev/null; then
  whl="$(ls .whl/ml_collections-*.whl 2>/dev/null | head -n 1)"
  if [[ -z "$whl" ]]; then
    echo "error: ml_collections is not installed and no .whl/ml_collections-*.whl is here;" \
         "run: pip download --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0" >&2
    exit 2
  fi
  echo "installing $whl into $WORK/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$whl" \
    || exit 2
  export PYTHONPATH="$WORK/site:$PYTHONPATH"
fi

DRY="$DRY" XLA_PYTHON_CLIENT_PREALLOCATE=false "$PYTHON" - <<'EOF' || exit 2
import os, sys
import jax, ml_collections, flax, optax
try:
  import torch, torchvision
  t = f"torch {torch.__version__}, torchvision {torchvision.__version__}, cuda: {torch.cuda.is_available()}"
except ImportError as e:
  t = f"no PyTorch ({e}): the torch runs will fail"
dev = jax.devices()[0]
print(f"jax {jax.__version__} on {jax.device_count()}x {dev.device_kind} ({dev.platform}); "
      f"flax {flax.__version__}, optax {optax.__version__}; {t}")
if os.environ["DRY"] != "1" and dev.platform == "cpu":
  sys.exit("error: JAX sees no accelerator here (set DRY=1 for the CPU dry run)")
EOF

# Seconds a run may take: its own limit, capped by what is left of the total.
limit_for() {
  local want="$1" left=$((deadline - SECONDS - 10))
  (( left < want )) && want=$left
  echo "$want"
}

for run in $RUNS; do
  name="${run%%:*}"
  b="${run##*:}"
  [[ "$DRY" == 1 ]] && b=$(( b >= 128 ? 4 : 2 ))
  case "$name" in
    torch)
      limit=$(limit_for "$TORCH_LIMIT_S")
      if (( limit < 45 )); then echo "=== skipped $run: ${limit}s left"; continue; fi
      echo "=== PyTorch, batch $b (limit ${limit}s)"
      # shellcheck disable=SC2086
      timeout "$limit" "$PYTHON" benchmarks/peer_torch.py --batch="$b" --steps="$STEPS" \
        --json="$WORK/torch_$b.json" $TORCH_ARGS || echo "PyTorch at batch $b failed (exit $?)"
      ;;
    flax|fused)
      limit=$(limit_for "$JAX_LIMIT_S")
      if (( limit < 90 )); then echo "=== skipped $run: ${limit}s left"; continue; fi
      echo "=== avjax, norm=$name, per-device batch $b (limit ${limit}s)"
      # shellcheck disable=SC2086
      timeout "$limit" "$PYTHON" -m avjax.benchmark step \
        --config="configs/step_benchmark.py${CONFIG_ARGS:+:$CONFIG_ARGS}" \
        --config.model.norm="$name" --batch="$b" --steps="$STEPS" \
        --workdir="$WORK/${name}_$b" $JAX_ARGS \
        || echo "avjax norm=$name at batch $b failed (exit $?)"
      ;;
    *)
      echo "error: unknown run $run (NAME:BATCH with NAME torch, flax or fused)" >&2
      exit 2
      ;;
  esac
done

"$PYTHON" - "$WORK" "$OUT_FILE" "$RUNS" "$DRY" <<'EOF'
import json, os, sys

work, out_file, runs, dry = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4] == "1"


def load(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def fmt(x, spec):
  return "n/a" if x is None else format(x, spec)


results = []
for run in runs:
  name, b = run.split(":")
  if dry:
    b = "4" if int(b) >= 128 else "2"
  path = (os.path.join(work, f"torch_{b}.json") if name == "torch"
          else os.path.join(work, f"{name}_{b}", "step.json"))
  results.append((name, b, load(path)))

reference = next((r for name, _, r in results if name == "torch" and r), None)
device = next((r["device"] for _, _, r in results if r), None)
versions = sorted({f"jax {r['jax']}" for n, _, r in results if r and n != "torch"} |
                  {f"torch {r['torch']}" for n, _, r in results if r and n == "torch"})
shapes = sorted({f"video {'x'.join(map(str, r['video_shape'][:3]))} + "
                 f"{'x'.join(map(str, r['audio_shape'][:2]))} log-mel"
                 for _, _, r in results if r})
dtypes = sorted({("PyTorch " if n == "torch" else "avjax ") + r["dtype"]
                 for n, _, r in results if r})
label = {"torch": "PyTorch reference", "flax": "avjax, norm=flax", "fused": "avjax, norm=fused"}
rows = []
for name, b, r in results:
  if r is None:
    rows.append(f"| {label[name]} | {b} | failed or skipped |  |  |  |  |  |  |")
    continue
  ratio = (f"**{r['samples_per_s'] / reference['samples_per_s']:.2f}x**"
           if reference and name != "torch" else ("1.00x" if r is reference else "n/a"))
  peak = r.get("peak_memory_bytes")
  rows.append("| " + " | ".join([
      label[name] + (f", remat={r['remat']}" if r.get("remat", "none") != "none" else ""),
      b, f"{r['samples_per_s']:.1f}", ratio, f"{r['step_time_s'] * 1e3:.1f}",
      fmt(r.get("tflops_per_device"), ".3g"), f"{r['compile_s']:.0f}",
      "n/a" if not peak else f"{peak / 2**30:.1f}",
      f"{r['step_time_p10_s'] * 1e3:.0f}-{r['step_time_p90_s'] * 1e3:.0f}"]) + " |")

table = "\n".join([
    ("**DRY RUN on CPU (tiny avjax encoders; not a measurement).** " if dry else "")
    + f"Training step on 1x {device}, {', '.join(versions)}; "
    f"{' / '.join(shapes) or 'no run finished'}"
    f"{' (SHAPES DIFFER)' if len(shapes) > 1 else ''}; Adam; {'; '.join(dtypes)}; median of "
    f"{next((r['steps'] for _, _, r in results if r), '?')} timed steps.",
    "",
    "| run | batch | samples/s | x PyTorch | step ms | TFLOP/s | compile / warm-up s "
    "| peak GiB | p10-p90 ms |",
    "|---|---|---|---|---|---|---|---|---|",
    *rows,
    "",
    "x PyTorch: samples/s over the PyTorch reference's (batch "
    f"{next((b for n, b, r in results if n == 'torch' and r), 'n/a')}). TFLOP/s: avjax from "
    "its analytic count (3 x forward conv/dense FLOPs), PyTorch from "
    "torch.utils.flop_counter; both ~495 GFLOP per sample at the paper's shapes.",
])
print(table)
if out_file:
  with open(out_file, "w", encoding="utf-8") as f:
    f.write(table + "\n")
EOF
