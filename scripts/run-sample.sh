#!/usr/bin/env bash
# Main job: install what is missing, detect crowns in the bundled sample orthophoto with the
# bundled model (treecrowns:detect), write a GeoPackage and a PNG map, print the count and paths.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
.venv/bin/python scripts/detect_sample.py "${1:-output}" 2> >(grep -v "XDG_RUNTIME_DIR" >&2)
