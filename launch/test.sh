#!/usr/bin/env bash
# Installs what the tests need (pinned) and runs the whole suite on CPU.
# Usage: bash launch/test.sh [pytest args]    e.g. -m "not slow" (the quick inner loop),
#   -k sampling, tests/test_loop.py (paths relative to the current folder)
set -euo pipefail
CALLER="$PWD"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The beam extra too: tests/test_beam_ingest.py runs the Beam ingest on the DirectRunner.
EXTRAS=test,beam source "$REPO/launch/env.sh"
# pytest runs in the repository (its pytest.ini and conftest); paths given relative to the
# caller's folder are made absolute first.
# Without a path the whole of tests/ runs.
ARGS=() WHERE=(tests)
for arg in "$@"; do
  if [[ "$arg" != -* && "$arg" != /* && -e "$CALLER/${arg%%::*}" ]]; then
    arg="$CALLER/$arg"
  fi
  if [[ "$arg" == /* && -e "${arg%%::*}" ]]; then WHERE=(); fi
  ARGS+=("$arg")
done
cd "$REPO"
# Tests simulate 8 CPU devices (tests/conftest.py) and use tiny model variants. A file's
# tests run in one worker, the files with the most slow tests first (tests/conftest.py;
# --no-loadscope-reorder needs pytest-xdist 3.8).
python -m pytest ${WHERE[@]+"${WHERE[@]}"} -n 2 --dist loadgroup --no-loadscope-reorder \
  --durations=15 \
  ${ARGS[@]+"${ARGS[@]}"}
