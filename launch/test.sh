#!/usr/bin/env bash
# Installs what the tests need (pinned) and runs the whole suite on CPU.
# Usage: bash launch/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
# The beam extra too: tests/test_beam_ingest.py runs the Beam ingest on the DirectRunner.
EXTRAS=test,beam source launch/env.sh
# Tests simulate 8 CPU devices (tests/conftest.py) and use tiny model variants.
python -m pytest tests -n 2 --dist loadfile --durations=15 "$@"
