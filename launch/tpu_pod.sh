#!/usr/bin/env bash
# Pretraining on all workers of a Cloud TPU VM pod: one process per worker, all of them one
# JAX program (avjax.main calls jax.distributed.initialize, which finds the pod's workers).
#
#   bash launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]
#   bash launch/tpu_pod.sh avjax-v5p-32 us-east5-a \
#       configs/pretrain.py:dataset=/mnt/shared/data/movie,k=16 /mnt/shared/runs/movie_k16
#
# Steps, each on every worker at once (gcloud compute tpus tpu-vm ssh --worker=all):
#   1. copy this checkout (tracked and not-ignored files) to ~/$REMOTE_DIR;
#   2. install avjax[tpu,data] there with the pinned dependencies (launch/env.sh);
#   3. run `python -m avjax.main --config=CONFIG --workdir=WORKDIR ...`.
# The datasets and WORKDIR must be paths that every worker sees (the same NFS/Filestore
# mount on each): all workers write the checkpoints of one run into WORKDIR. The run stops
# when this script's ssh session ends, so start it from tmux/screen for long runs.
# Rerunning the same command resumes from the latest checkpoint in WORKDIR.
#
# Environment:
#   PROJECT=ID       gcloud project (default: gcloud's configured one)
#   REMOTE_DIR=DIR   where the checkout goes on the workers, under $HOME (default avjax)
#   PYTHON=python3.11  the interpreter for the workers' virtual environment (>= 3.11)
#   SKIP_SYNC=1, SKIP_INSTALL=1   reuse what an earlier call put on the workers
#   DRY_RUN=1        print the gcloud commands instead of running them
set -euo pipefail

if (( $# < 4 )); then
  echo "usage: bash launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
TPU=$1
ZONE=$2
CONFIG=$3
WORKDIR=$4
shift 4
# The run happens on the workers, not in this folder: a relative WORKDIR would name a
# folder inside each worker's copy of the code.
if [[ "$WORKDIR" != /* && "$WORKDIR" != *://* ]]; then
  echo "[avjax] WORKDIR must be an absolute path that every worker sees (a shared mount)," \
       "not $WORKDIR" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REMOTE_DIR="${REMOTE_DIR:-avjax}"
PYTHON="${PYTHON:-python3}"
TPU_VM=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE" --worker=all ${PROJECT:+--project="$PROJECT"})

run() {
  if [[ -n "${DRY_RUN:-}" ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

on_all_workers() {
  echo "[avjax] on all workers of $TPU: $1"
  run "${TPU_VM[@]}" ssh "$TPU" "${WHERE[@]}" --command="$1"
}

# 1. Code.
if [[ -z "${SKIP_SYNC:-}" ]]; then
  tarball="$(mktemp -d)/avjax-src.tar.gz"
  if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
       | tar --null -czf "$tarball" -T -)
  else
    tar -czf "$tarball" -C "$ROOT" --exclude=./.venv --exclude=./runs --exclude=./data .
  fi
  run "${TPU_VM[@]}" scp "$tarball" "$TPU:/tmp/avjax-src.tar.gz" "${WHERE[@]}"
  on_all_workers "mkdir -p ~/$REMOTE_DIR && tar -xzf /tmp/avjax-src.tar.gz -C ~/$REMOTE_DIR"
  rm -rf "$(dirname "$tarball")"
fi

# 2. Environment: JAX for TPUs plus the data extras, pinned by constraints.txt.
if [[ -z "${SKIP_INSTALL:-}" ]]; then
  on_all_workers "cd ~/$REMOTE_DIR && { [[ -x .venv/bin/python ]] || $PYTHON -m venv .venv; } \
&& EXTRAS=tpu,data source launch/env.sh"
fi

# 3. Training, on every worker at once.
main_cmd="$(printf '%q ' python -m avjax.main --config="$CONFIG" --workdir="$WORKDIR" "$@")"
on_all_workers "cd ~/$REMOTE_DIR && source .venv/bin/activate && AVJAX_DISTRIBUTED=1 $main_cmd"

if [[ -z "${DRY_RUN:-}" ]]; then
  echo "[avjax] done. If $WORKDIR/export/model_config.json is missing, the run stopped early" \
       "(preemption or maintenance saves a checkpoint); rerun this command to resume."
fi
