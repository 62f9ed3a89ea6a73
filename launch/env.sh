# Sourced by the launch scripts: makes ./.venv with avjax and the pinned stack
# (constraints.txt, one set for every extra) installed, and activates it. EXTRAS picks
# setup.py extras, comma-separated (e.g. EXTRAS=test,beam).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${EXTRAS:-test}"
VENV="${AVJAX_VENV:-$ROOT/.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[avjax] creating virtual environment $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
echo "[avjax] installing avjax[$EXTRAS] with pinned dependencies (constraints.txt)"
python -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[$EXTRAS]"
