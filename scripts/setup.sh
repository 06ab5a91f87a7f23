#!/usr/bin/env bash
# Install what treecrowns needs on Debian 12, skipping whatever is already there:
# QGIS and the geospatial Python stack from Debian, torch/torchvision in .venv, and the public
# sample plots (NEON imagery with hand-drawn crowns) from the deepforest wheel into build/samples/.
# Run as root (apt). Idempotent: a second run takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(qgis python3-qgis qgis-providers python3-rasterio python3-shapely python3-scipy python3-gdal python3-venv xvfb gdal-bin)
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

if ! .venv/bin/python -c "import torch, torchvision, safetensors, distributed, pytest, hypothesis, ruff, bandit, efficientnet_lite_pytorch" 2>/dev/null; then
    echo "Creating .venv with torch and torchvision (a few minutes on a new machine)"
    /usr/bin/python3 -m venv --system-site-packages .venv
    # (pip warns about local package folders this machine's pip config names; they are noise here)
    .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import torch, torchvision, safetensors, distributed, pytest, hypothesis, ruff, bandit, efficientnet_lite_pytorch"
    # triton is only for torch.compile on GPUs, and its LLVM crashes the QGIS desktop on Mesa.
    .venv/bin/pip uninstall -y -q triton 2>/dev/null || true
fi

# QGIS finds plugins by folder name: expose this checkout as "treecrowns", whatever its own name.
mkdir -p build/plugins
ln -sfn "$PWD" build/plugins/treecrowns

# Sample plots: the deepforest wheel (MIT) ships real NEON plots with hand-drawn crowns in
# deepforest/data/. Fetch that one wheel, check its hash, keep only deepforest/data/; deepforest
# itself is never installed or imported.
samples=build/samples
sample_wheel=deepforest-2.1.0-py3-none-any.whl
sample_wheel_sha256=8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54
if [ ! -e "$samples/deepforest/data/OSBS_029.xml" ]; then
    echo "Fetching the sample plots (deepforest 2.1.0 wheel, 21 MB)"
    download=$(mktemp -d)
    .venv/bin/pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$download" deepforest==2.1.0 \
        2>&1 | grep -v "^WARNING: Location" || true
    echo "$sample_wheel_sha256  $download/$sample_wheel" | sha256sum --check --quiet
    rm -rf "$samples" && mkdir -p "$samples"
    .venv/bin/python - "$download/$sample_wheel" "$samples" <<'UNPACK'
import sys
import zipfile

wheel, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    archive.extractall(target, [name for name in archive.namelist() if name.startswith("deepforest/data/")])
UNPACK
    rm -rf "$download"
fi
