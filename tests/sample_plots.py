"""The deepforest wheel's NEON sample plots in tests: their crowns in map coordinates and as layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from treecrowns.core.sample_data import SamplePlot


def map_boxes(plot: SamplePlot) -> np.ndarray:
    """The plot's crowns in its raster's map coordinates (xmin, ymin, xmax, ymax)."""
    with rasterio.open(plot.image) as raster:
        transform = raster.transform
    boxes = plot.crowns.boxes
    x0, y0 = transform * (boxes[:, 0], boxes[:, 1])
    x1, y1 = transform * (boxes[:, 2], boxes[:, 3])
    return np.stack([np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1)], axis=1)


def crowns_layer(plots: list[SamplePlot], path: Path, label: str | None = None):
    """A GeoPackage of the plots' hand-drawn crowns in map coordinates, with a ``label`` field.

    Labels are the plots' own unless ``label`` replaces them all. All plots must share one CRS.
    """
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsFeature,
        QgsField,
        QgsFields,
        QgsGeometry,
        QgsProject,
        QgsRectangle,
        QgsVectorFileWriter,
        QgsVectorLayer,
        QgsWkbTypes,
    )
    from qgis.PyQt.QtCore import QVariant

    fields = QgsFields()
    fields.append(QgsField("label", QVariant.String))
    features, crs_wkts = [], set()
    for plot in plots:
        with rasterio.open(plot.image) as raster:
            crs_wkts.add(raster.crs.to_wkt())
        for box, own_label in zip(map_boxes(plot), plot.crowns.labels):
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(*box)))
            feature.setAttributes([label or own_label])
            features.append(feature)
    assert len(crs_wkts) == 1, "the plots of one crown layer must share a CRS"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    writer = QgsVectorFileWriter.create(
        str(path), fields, QgsWkbTypes.Polygon, QgsCoordinateReferenceSystem.fromWkt(crs_wkts.pop()),
        QgsProject.instance().transformContext(), options,
    )
    writer.addFeatures(features)
    del writer
    layer = QgsVectorLayer(str(path), "reference", "ogr")
    assert layer.isValid() and layer.featureCount() == len(features)
    return layer


def boxes_of(layer) -> np.ndarray:
    """Bounding boxes of a layer's features, (N, 4) in its map coordinates."""
    return np.array(
        [[r.xMinimum(), r.yMinimum(), r.xMaximum(), r.yMaximum()] for r in (f.geometry().boundingBox() for f in layer.getFeatures())]
    ).reshape(-1, 4)
