"""Shared fixtures: the plugin importable as ``treecrowns``, the public sample plots, seeded synthetic rasters.

Tests marked ``needs_training_data`` rebuild or re-score the bundled model from its own training
data, which lies beside this project's CI checkout in ../shared; elsewhere they are skipped.
"""

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
TRAINING_DATA_MISSING = (
    f"needs the bundled model's training data (NEON plots, NeonTreeEvaluation) at {NEON}, "
    "which only this project's CI has beside its checkout"
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import write_raster  # noqa: E402
from treecrowns.core.sample_data import SamplePlot, sample_plot  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if (NEON / "annotations.csv").exists():
        return
    for item in items:
        if "needs_training_data" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=TRAINING_DATA_MISSING))


@pytest.fixture
def neon() -> Path:
    """The bundled model's training plots; only for tests marked ``needs_training_data``."""
    assert (NEON / "annotations.csv").exists(), TRAINING_DATA_MISSING
    return NEON


@pytest.fixture(scope="session")
def osbs_plot() -> SamplePlot:
    """OSBS_029: a 400 x 400 px, 10 cm GeoTIFF in EPSG:32617 with 61 hand-drawn crowns."""
    return sample_plot("OSBS_029")


@pytest.fixture(scope="session")
def soap_plot() -> SamplePlot:
    """SOAP_061: a 400 x 400 px PNG without georeference, 37 crowns labelled Alive or Dead."""
    return sample_plot("SOAP_061")


@pytest.fixture
def crowns_raster(tmp_path):
    """A 300 x 240 px, 10 cm, UTM raster with six bright square 'crowns' at known pixel positions."""
    crowns = [(20, 30, 24), (90, 40, 30), (150, 120, 20), (230, 60, 36), (40, 180, 28), (260, 190, 22)]
    path = write_raster(tmp_path / "crowns.tif", 300, 240, crowns=crowns)
    return path, crowns
