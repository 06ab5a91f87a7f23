#!/usr/bin/env bash
# Install what is missing, then run the whole test suite: core (no QGIS), offscreen QGIS,
# the real qgis_process, and the real QGIS desktop under Xvfb. Extra arguments go to pytest,
# e.g. scripts/run-tests.sh -m "not slow" for the quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
exec .venv/bin/python -m pytest "$@"
