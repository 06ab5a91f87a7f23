"""scripts/treecrowns-detect: detection without QGIS, in this process or on local Dask workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import ogr

from treecrowns.command_line import main
from treecrowns.core.boxes import iou_matrix
from treecrowns.core.checkpoint import load_checkpoint
from treecrowns.core.prediction import DetectionSettings, detect

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors"


def read_crowns(path: Path) -> tuple[np.ndarray, list[float], list[str], str]:
    source = ogr.Open(str(path))
    layer = source.GetLayerByName("crowns")
    boxes, scores, statuses = [], [], []
    for feature in layer:
        x0, x1, y0, y1 = feature.GetGeometryRef().GetEnvelope()
        boxes.append([x0, y0, x1, y1])
        scores.append(feature.GetField("score"))
        statuses.append(feature.GetField("status"))
    epsg = layer.GetSpatialRef().GetAuthorityCode(None)
    return np.array(boxes).reshape(-1, 4), scores, statuses, epsg


def test_the_command_runs_without_qgis_on_local_workers_and_writes_the_crowns_qgis_would(osbs_plot, tmp_path):
    blocker = tmp_path / "blocked" / "qgis"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the command line must run without QGIS')\n")
    output = tmp_path / "crowns.gpkg"
    env = {"PYTHONPATH": f"{blocker.parent}:{REPO / 'build' / 'plugins'}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "treecrowns.command_line", str(osbs_plot.image), str(output), "--cluster", "local:2"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    boxes, scores, statuses, epsg = read_crowns(output)
    expected = detect(str(osbs_plot.image), load_checkpoint(BUNDLED), DetectionSettings())
    assert f"{len(expected)} tree crowns written" in done.stdout
    assert epsg == "32617" and set(statuses) == {"predicted"}
    assert len(boxes) == len(expected) > 10
    assert iou_matrix(boxes, expected.boxes).max(axis=1).min() > 0.999
    assert np.allclose(sorted(scores), sorted(expected.scores), atol=1e-4)


@pytest.mark.parametrize("arguments, message", [
    (["crowns.shp"], "GeoPackage"),
    (["crowns.gpkg", "--bands", "red"], "three band numbers"),
    (["crowns.gpkg", "--cluster", "somewhere"], "tcp://host:port"),
    (["crowns.gpkg", "--model", "missing.safetensors"], "missing.safetensors"),
])
def test_bad_input_exits_with_a_message_and_writes_nothing(osbs_plot, tmp_path, capsys, arguments, message):
    output, *options = arguments
    assert main([str(osbs_plot.image), str(tmp_path / output), *options]) == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
