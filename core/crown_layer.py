"""Crown GeoPackages written without QGIS: one box per crown with its score, label and review status.

The same file the plugin opens, styles and lets a person review; written here through GDAL's own
Python bindings so that the command line and workers without QGIS write it too. Crowns go in
batches, one transaction each, so a whole orthophoto's hundreds of thousands of crowns need no more
memory than a batch; the GeoPackage keeps its spatial index (an R-tree) so that QGIS draws and
selects them quickly. The file appears at its path only when complete.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import OutputError

CROWNS_LAYER_NAME = "crowns"
# Review status of a crown as the model found it (the review panel moves it on).
STATUS_PREDICTED = "predicted"
# Field name -> OGR type name, in the order the layer holds them.
CROWN_FIELDS = {"score": "OFTReal", "label": "OFTString", "status": "OFTString", "model": "OFTString",
                "detected": "OFTString"}
WRITE_BATCH = 10_000


def check_destination(path: Path) -> None:
    """Refuse a path that is not a GeoPackage or whose folder cannot take it, before any work is done."""
    if path.suffix.lower() != ".gpkg":
        raise OutputError(f"crowns are written as a GeoPackage; give a path ending in .gpkg, not {path.name}")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"cannot write {path}: folder {path.parent} is not writable; choose another output")


def remove_sqlite_sidecars(path: str | Path) -> None:
    """Delete the SQLite write-ahead log, shared-memory and journal files beside a GeoPackage.

    Beside the temporary file they are this writer's own leftovers. Beside the target they are
    stale: QGIS stopped while it had the old file open leaves ``-wal`` and ``-shm`` behind, and
    SQLite would replay that log into the new file that takes the old one's name (the user would
    see the old crowns or a "malformed" database). The plugin never writes over a layer that is
    open (gis/output_checks.py).
    """
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def write_crown_geopackage(
    path: str | Path,
    crs_wkt: str | None,
    boxes: np.ndarray,
    scores: Sequence[float | None],
    labels: Sequence[str],
    statuses: Sequence[str],
    model_path: str,
) -> Path:
    """Write crowns (map boxes ``xmin, ymin, xmax, ymax``) to a GeoPackage: the whole layer or nothing.

    Raises:
        OutputError: If the folder is missing or not writable, or GDAL cannot write the file.
    """
    from osgeo import ogr, osr  # GDAL's bindings; imported here so that reading the engine does not need them

    path = Path(path)
    check_destination(path)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".gpkg")
    os.close(handle)
    os.remove(tmp_name)
    try:
        source = ogr.GetDriverByName("GPKG").CreateDataSource(tmp_name)
        if source is None:
            raise OutputError(f"cannot write {path}: GDAL could not create a GeoPackage there")
        reference = None
        if crs_wkt:
            reference = osr.SpatialReference()
            reference.ImportFromWkt(crs_wkt)
            reference.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        layer = source.CreateLayer(CROWNS_LAYER_NAME, reference, ogr.wkbPolygon, ["SPATIAL_INDEX=YES", "FID=fid"])
        for name, kind in CROWN_FIELDS.items():
            layer.CreateField(ogr.FieldDefn(name, getattr(ogr, kind)))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        definition = layer.GetLayerDefn()
        for start in range(0, len(boxes), WRITE_BATCH):
            layer.StartTransaction()
            for i in range(start, min(start + WRITE_BATCH, len(boxes))):
                x0, y0, x1, y1 = (float(v) for v in boxes[i])
                feature = ogr.Feature(definition)
                feature.SetGeometry(ogr.CreateGeometryFromWkt(
                    f"POLYGON (({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
                if scores[i] is not None:
                    feature.SetField("score", float(scores[i]))
                feature.SetField("label", str(labels[i]))
                feature.SetField("status", str(statuses[i]))
                feature.SetField("model", model_path)
                feature.SetField("detected", stamp)
                if layer.CreateFeature(feature) != 0:
                    raise OutputError(f"cannot write {path}: GDAL failed on crown {i} (is the disk full?)")
            if layer.CommitTransaction() != 0:
                raise OutputError(f"cannot write {path}: GDAL could not save crowns {start} to {i} (is the disk full?)")
        layer = None
        source = None  # closes the file
        remove_sqlite_sidecars(path)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
        remove_sqlite_sidecars(tmp_name)
    return path
