"""Shared fixtures: the plugin importable as ``treecrowns``, and small seeded synthetic rasters."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "build" / "plugins"
PLUGINS.mkdir(parents=True, exist_ok=True)
if not (PLUGINS / "treecrowns").exists():
    (PLUGINS / "treecrowns").symlink_to(REPO)
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

NEON = REPO.parent / "shared" / "data" / "neon"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import write_raster  # noqa: E402


@pytest.fixture
def neon() -> Path:
    if not (NEON / "annotations.csv").exists():
        pytest.fail(f"NEON test data not found at {NEON}; the tests need ../shared/data/neon beside the checkout")
    return NEON


@pytest.fixture
def crowns_raster(tmp_path):
    """A 300 x 240 px, 10 cm, UTM raster with six bright square 'crowns' at known pixel positions."""
    crowns = [(20, 30, 24), (90, 40, 30), (150, 120, 20), (230, 60, 36), (40, 180, 28), (260, 190, 22)]
    path = write_raster(tmp_path / "crowns.tif", 300, 240, crowns=crowns)
    return path, crowns
