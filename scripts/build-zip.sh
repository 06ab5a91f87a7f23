#!/usr/bin/env bash
# Build dist/treecrowns.zip for QGIS's "Install from ZIP": the plugin files only, under a treecrowns/ folder.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist
/usr/bin/python3 - "$@" <<'PY'
import subprocess, zipfile
from pathlib import Path

PLUGIN_PARTS = ("metadata.txt", "__init__.py", "plugin.py", "command_line.py", "install_packages.py", "LICENSE", "core/", "gis/", "processing_provider/", "ui/", "resources/")
tracked = subprocess.run(["git", "ls-files", "-z"], capture_output=True, text=True, check=True).stdout.split("\0")
files = sorted(f for f in tracked if f and f.startswith(PLUGIN_PARTS) and "__pycache__" not in f)
target = Path("dist/treecrowns.zip")
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
    for name in files:
        archive.write(name, f"treecrowns/{name}")
print(f"{target} ({target.stat().st_size / 1e6:.1f} MB, {len(files)} files)")
PY
