#!/usr/bin/env bash
# Install what treecrowns needs on Debian 12, skipping whatever is already there:
# QGIS and the geospatial Python stack from Debian, torch/torchvision in .venv.
# Run as root (apt). Idempotent: a second run takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(qgis python3-qgis qgis-providers python3-rasterio python3-shapely python3-scipy python3-venv xvfb gdal-bin)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! .venv/bin/python -c "import torch, torchvision, safetensors, pytest, hypothesis, ruff" 2>/dev/null; then
    echo "Creating .venv with torch and torchvision (a few minutes on a new machine)"
    /usr/bin/python3 -m venv --system-site-packages .venv
    # (pip warns about local package folders this machine's pip config names; they are noise here)
    .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import torch, torchvision, safetensors, pytest, hypothesis, ruff"
    # triton is only for torch.compile on GPUs, and its LLVM crashes the QGIS desktop on Mesa.
    .venv/bin/pip uninstall -y -q triton 2>/dev/null || true
fi

# QGIS finds plugins by folder name: expose this checkout as "treecrowns", whatever its own name.
mkdir -p build/plugins
ln -sfn "$PWD" build/plugins/treecrowns
