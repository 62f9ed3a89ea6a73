#!/usr/bin/env bash
# A multi-host run on this machine: N JAX processes of one entry point on localhost, each
# with DEVICES simulated CPU devices (default 4) and gloo collectives, joined through the
# same variables a cluster launcher sets (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
# JAX_PROCESS_ID). The way to try the multi-host path before a cluster (docs/launch.md).
#
#   bash launch/local_multihost.sh N CONFIG WORKDIR [--config.FIELD=VALUE ...]
#   bash launch/local_multihost.sh 2 configs/pretrain.py:dataset=data/synth,runlocal runs/mh
#   MODULE=avjax.finetune bash launch/local_multihost.sh 2 \
#       configs/downstream/esc50.py:data=data/esc50,runlocal runs/mh_esc50
#
# MODULE picks the entry point (default avjax.main; avjax.finetune takes the same CONFIG
# WORKDIR). Commands without a config (avjax.export, avjax.discrepancy) go through the
# Python launcher directly:
#   python launch/local_multihost.py --processes=2 -- python -m avjax.discrepancy --workdir=W
# Every process's output goes to the console prefixed "[pI]" and to WORKDIR/logs/. SIGTERM
# or Ctrl-C saves a checkpoint and stops all of them; if one process fails, the others
# are stopped and the exit status is the failed one's. Environment: DEVICES, MODULE,
# PYTHON (default: the project's ./.venv, made if missing), LAUNCH_ARGS (more options of launch/local_multihost.py).
set -euo pipefail
if (( $# < 3 )); then
  echo "usage: bash launch/local_multihost.sh N CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
N=$1
CONFIG=$2
WORKDIR=$3
shift 3
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAUNCH="$REPO/launch/local_multihost.py"
# Relative paths (WORKDIR, datasets in CONFIG) stay relative to the caller's folder: this
# script does not change folder. Without PYTHON, the project's venv, as demo.sh uses it.
if [[ -z "${PYTHON:-}" ]]; then
  EXTRAS="${EXTRAS:-data}" source "$REPO/launch/env.sh"
  PYTHON=python
fi
# shellcheck disable=SC2086
exec "$PYTHON" "$LAUNCH" --processes="$N" --devices_per_process="${DEVICES:-4}" \
  --log_dir="$WORKDIR/logs" ${LAUNCH_ARGS:-} -- \
  "$PYTHON" -m "${MODULE:-avjax.main}" --config="$CONFIG" --workdir="$WORKDIR" "$@"
