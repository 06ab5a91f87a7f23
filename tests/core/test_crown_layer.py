"""Crown GeoPackages written by the engine: the file holds exactly the crowns just detected."""

import shutil

import numpy as np
from osgeo import gdal, ogr

from treecrowns.core.crown_layer import CROWNS_LAYER_NAME, write_crown_geopackage


def crowns_in(path) -> list[tuple[float, str]]:
    source = ogr.Open(str(path))
    assert source is not None, f"{path} cannot be opened"
    layer = source.GetLayerByName(CROWNS_LAYER_NAME)
    return sorted((round(f.GetField("score"), 3), f.GetField("status")) for f in layer)


def write(path, scores):
    boxes = np.array([[10.0 * i, 0.0, 10.0 * i + 5, 5.0] for i in range(len(scores))])
    write_crown_geopackage(path, None, boxes, scores, ["Tree"] * len(scores), ["predicted"] * len(scores), "model")


def test_writing_over_a_file_that_a_stopped_qgis_left_open_gives_the_new_crowns_only(tmp_path):
    """QGIS stopped with the old layer open leaves its write-ahead log; it must not leak into the new file."""
    old = tmp_path / "crowns.gpkg"
    write(old, [0.9, 0.8, 0.7])
    # An editing session in write-ahead-log mode, stopped before SQLite folded the log back in:
    # copy the database with its -wal and -shm while the connection is still open.
    gdal.SetConfigOption("OGR_SQLITE_JOURNAL", "WAL")
    try:
        source = ogr.Open(str(old), 1)
        layer = source.GetLayerByName(CROWNS_LAYER_NAME)
        for feature in layer:
            feature.SetField("status", "confirmed")
            layer.SetFeature(feature)
        source.FlushCache()
        stopped = tmp_path / "stopped"
        stopped.mkdir()
        for suffix in ("", "-wal", "-shm"):
            shutil.copy(f"{old}{suffix}", stopped / f"crowns.gpkg{suffix}")
        source = None
    finally:
        gdal.SetConfigOption("OGR_SQLITE_JOURNAL", None)
    target = stopped / "crowns.gpkg"
    assert (stopped / "crowns.gpkg-wal").stat().st_size > 0

    write(target, [0.5, 0.4])

    assert crowns_in(target) == [(0.4, "predicted"), (0.5, "predicted")]
