# Shell settings that let QGIS (desktop, qgis_process, offscreen Python) see the venv and this plugin.
# Source it: . scripts/env.sh
TREECROWNS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export QGIS_PLUGINPATH="$TREECROWNS_ROOT/build/plugins"
export PYTHONPATH="$TREECROWNS_ROOT/build/plugins:$TREECROWNS_ROOT/.venv/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
