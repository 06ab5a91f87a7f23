"""Building QGIS layers of reference crowns for tests."""

from __future__ import annotations

import numpy as np
import rasterio


def neon_crowns_layer(neon, plots, path, label="Tree"):
    """A GeoPackage of the NEON reference crowns of ``plots``, in map coordinates, with a label field."""
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

    from treecrowns.core.annotations import read_deepforest_csv

    items = {item.image_path: item for item in read_deepforest_csv(neon / "annotations.csv")}
    fields = QgsFields()
    fields.append(QgsField("label", QVariant.String))
    features, crs = [], None
    for plot in plots:
        item = items[str(neon / "images" / plot)]
        with rasterio.open(item.image_path) as dataset:
            transform, crs = dataset.transform, dataset.crs.to_wkt()
        for box in item.boxes:
            x0, y0 = transform * (box[0], box[1])
            x1, y1 = transform * (box[2], box[3])
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))))
            feature.setAttributes([label])
            features.append(feature)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    writer = QgsVectorFileWriter.create(
        str(path), fields, QgsWkbTypes.Polygon, QgsCoordinateReferenceSystem.fromWkt(crs),
        QgsProject.instance().transformContext(), options,
    )
    writer.addFeatures(features)
    del writer
    layer = QgsVectorLayer(str(path), "reference", "ogr")
    assert layer.isValid() and layer.featureCount() == len(features)
    return layer


def boxes_of(layer) -> np.ndarray:
    return np.array(
        [[r.xMinimum(), r.yMinimum(), r.xMaximum(), r.yMaximum()] for r in (f.geometry().boundingBox() for f in layer.getFeatures())]
    ).reshape(-1, 4)
