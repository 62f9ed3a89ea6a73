#!/usr/bin/env bash
# avjax's jitted training step against the PyTorch reference on one GPU, side by side:
# per-device batch 32 and 64, same shapes (16x158x158 video, 96x300 log-mel), bf16.
# Prints a markdown table with the ratio avjax samples/s / PyTorch samples/s and writes it
# to $1 (default: stdout only), ready for docs/benchmarks.md.
#
#   bash benchmarks/run_gpu.sh [TABLE.md]
#   STEPS=30 BATCHES="32 64 128" bash benchmarks/run_gpu.sh     # more
#   JAX_ARGS="--config=configs/step_benchmark.py:remat=convs" bash benchmarks/run_gpu.sh
#   BATCHES=2 STEPS=3 JAX_ARGS="--config=configs/step_benchmark.py:runlocal" \
#     TORCH_ARGS="--device=cpu --frames=8 --crop=56 --audio_frames=100 --warmup=1" \
#     bash benchmarks/run_gpu.sh               # CPU smoke test of the script itself
#
# Needs JAX (GPU), Flax, Optax, Orbax, chex, absl, ml_collections, torch and torchvision;
# no TensorFlow. Where ml_collections is missing (pure Python), carry its wheel in .whl/:
#   pip download --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0
# and this script installs it into a temporary --target directory (it needs PyYAML and
# absl-py, which such hosts have).
#
# Budget: each avjax run compiles the step once (60-100 s on an H100), each PyTorch run
# spends ~10-30 s in cuDNN autotuning; with 25 timed steps the four runs take ~5-6 min.
# Each run has its own time limit so that one hang cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_FILE="${1:-}"
PYTHON="${PYTHON:-python3}"
STEPS="${STEPS:-25}"
BATCHES="${BATCHES:-32 64}"
JAX_LIMIT_S="${JAX_LIMIT_S:-200}"
TORCH_LIMIT_S="${TORCH_LIMIT_S:-120}"
JAX_ARGS="${JAX_ARGS:-}"
TORCH_ARGS="${TORCH_ARGS:-}"
WORK="$(mktemp -d)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if ! "$PYTHON" -c "import ml_collections" 2>/dev/null; then
  whl="$(ls .whl/ml_collections-*.whl 2>/dev/null | head -n 1)"
  if [[ -z "$whl" ]]; then
    echo "error: ml_collections is not installed and no .whl/ml_collections-*.whl is here;" \
         "run: pip download --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0" >&2
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$whl" \
    || exit 2
  export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi

XLA_PYTHON_CLIENT_PREALLOCATE=false "$PYTHON" - <<'EOF' || exit 2
import jax, torch
print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__}, "
      f"cuda available: {torch.cuda.is_available()}")
EOF

for b in $BATCHES; do
  echo "=== avjax, per-device batch $b"
  # shellcheck disable=SC2086
  timeout "$JAX_LIMIT_S" "$PYTHON" -m avjax.benchmark step --batch="$b" --steps="$STEPS" \
    --workdir="$WORK/avjax_$b" $JAX_ARGS || echo "avjax at batch $b failed (exit $?)"
  echo "=== PyTorch, batch $b"
  # shellcheck disable=SC2086
  timeout "$TORCH_LIMIT_S" "$PYTHON" benchmarks/peer_torch.py --batch="$b" --steps="$STEPS" \
    --json="$WORK/torch_$b.json" $TORCH_ARGS || echo "PyTorch at batch $b failed (exit $?)"
done

"$PYTHON" - "$WORK" "$OUT_FILE" "$BATCHES" <<'EOF'
import json, os, sys

work, out_file, batches = sys.argv[1], sys.argv[2], sys.argv[3].split()


def load(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def fmt(x, spec):
  return "failed" if x is None else format(x, spec)


def gib(r):
  n = r and r.get("peak_memory_bytes")
  return "n/a" if not n else f"{n / 2**30:.1f}"


rows, device, versions, shapes = [], None, set(), set()
for b in batches:
  j = load(os.path.join(work, f"avjax_{b}", "step.json"))
  t = load(os.path.join(work, f"torch_{b}.json"))
  device = device or (j or t or {}).get("device")
  if j:
    versions.add(f"jax {j['jax']}")
  if t:
    versions.add(f"torch {t['torch']}")
  for r in (j, t):
    if r:
      shapes.add(f"video {'x'.join(map(str, r['video_shape'][:3]))} + "
                 f"{'x'.join(map(str, r['audio_shape'][:2]))} log-mel")
  js, ts = j and j["samples_per_s"], t and t["samples_per_s"]
  rows.append("| " + " | ".join([
      b, fmt(js, ".1f"), fmt(ts, ".1f"),
      f"**{js / ts:.2f}x**" if js and ts else "n/a",
      fmt(j and j["step_time_s"] * 1e3, ".1f"), fmt(t and t["step_time_s"] * 1e3, ".1f"),
      fmt(j and j["tflops_per_device"], ".1f"), fmt(t and t["tflops_per_device"], ".1f"),
      fmt(j and j["compile_s"], ".0f"), fmt(t and t["compile_s"], ".0f"),
      gib(j), gib(t)]) + " |")

table = "\n".join([
    f"Training step on 1x {device}, {', '.join(sorted(versions))}; "
    f"{' / '.join(sorted(shapes)) or 'no run finished'}"
    f"{' (SHAPES DIFFER)' if len(shapes) > 1 else ''}; Adam; median step time.",
    "",
    "| batch | avjax samples/s | PyTorch samples/s | ratio | avjax ms | PyTorch ms "
    "| avjax TFLOP/s | PyTorch TFLOP/s | avjax compile s | PyTorch warm-up s "
    "| avjax peak GiB | PyTorch peak GiB |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    *rows,
    "",
    "TFLOP/s: avjax from its analytic count (3 x forward conv/dense FLOPs), PyTorch from "
    "torch.utils.flop_counter; both ~495 GFLOP per sample.",
])
print(table)
if out_file:
  with open(out_file, "w", encoding="utf-8") as f:
    f.write(table + "\n")
EOF
