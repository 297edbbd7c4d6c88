#!/usr/bin/env bash
# The test command (README): architecture contracts, then the whole pytest suite as root.
# Long suites (fuzzing, schemathesis at full depth, kill -9 loops) are marked `slow`: the default
# run has a bounded version of each; BERTH_SLOW=1 runs them in full too.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./scripts/install.sh first" >&2; exit 2; }
.venv/bin/lint-imports
marks=(-m "not slow")
[ "${BERTH_SLOW:-0}" = 1 ] && marks=()
exec .venv/bin/python -m pytest -p no:cacheprovider -q "${marks[@]}" "$@"
