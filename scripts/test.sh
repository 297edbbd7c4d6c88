#!/usr/bin/env bash
# The test command (README): architecture contracts, then the whole pytest suite as root.
# BERTH_SLOW=1 runs the long (fuzz, load) suites in full; by default they run a bounded version.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./scripts/install.sh first" >&2; exit 2; }
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -p no:cacheprovider -q "$@"
