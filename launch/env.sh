# Sourced by the launch scripts: makes ./.venv with avjax and the pinned stack
# (constraints.txt, one set for every extra) installed, and activates it. EXTRAS picks
# setup.py extras, comma-separated (e.g. EXTRAS=test,beam).
# The install is skipped when nothing it depends on changed since the last one (a stamp in
# the venv). AVJAX_VENV=DIR uses another venv; AVJAX_SKIP_INSTALL=1 uses the `python` on
# PATH as it is (an environment set up by hand; the tests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${EXTRAS:-test}"
if [[ "${AVJAX_SKIP_INSTALL:-0}" != "1" ]]; then
  VENV="${AVJAX_VENV:-$ROOT/.venv}"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[avjax] creating virtual environment $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  STAMP="$VENV/.avjax-install-stamp"
  WANT="$(cat "$ROOT/setup.py" "$ROOT/constraints.txt" | sha256sum | cut -c1-16) $ROOT [$EXTRAS]"
  if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
    echo "[avjax] installing avjax[$EXTRAS] with pinned dependencies (constraints.txt)"
    python -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[$EXTRAS]"
    echo "$WANT" > "$STAMP"
  fi
fi
