"""Crown layers: writing detections to GeoPackage and reading boxes back from any vector layer."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsMapLayer,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant
from shapely import wkb as shapely_wkb
from shapely.geometry.base import BaseGeometry

from ..core.crown_layer import CROWNS_LAYER_NAME, write_crown_geopackage
from ..core.errors import AnnotationError, OutputError
from ..core.prediction import Detections
from .resources import CROWNS_STYLE
from .review import STATUS_PREDICTED


def crown_fields() -> QgsFields:
    """Fields of a crown layer: what the model said, and the review status a person keeps."""
    fields = QgsFields()
    fields.append(QgsField("score", QVariant.Double))
    fields.append(QgsField("label", QVariant.String))
    fields.append(QgsField("status", QVariant.String))
    fields.append(QgsField("model", QVariant.String))
    fields.append(QgsField("detected", QVariant.String))
    return fields


def detections_crs(detections: Detections) -> QgsCoordinateReferenceSystem:
    if detections.raster.crs_wkt:
        return QgsCoordinateReferenceSystem.fromWkt(detections.raster.crs_wkt)
    return QgsCoordinateReferenceSystem()


def crown_features(
    boxes: np.ndarray, scores, labels, statuses, model_path: str, fields: QgsFields
) -> Iterator[QgsFeature]:
    """One feature per crown, made as a sink takes them; ``model`` records the checkpoint that found it."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for box, score, label, status in zip(boxes, scores, labels, statuses):
        feature = QgsFeature(fields)
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(*map(float, box))))
        feature.setAttributes([None if score is None else float(score), label, status, model_path, stamp])
        yield feature


def detection_features(detections: Detections, model_path: str, fields: QgsFields) -> Iterator[QgsFeature]:
    """Features of freshly detected crowns: status ``predicted``."""
    statuses = [STATUS_PREDICTED] * len(detections)
    return crown_features(detections.boxes, detections.scores, detections.labels, statuses, model_path, fields)


def write_crown_layer(
    path: str | Path, crs: QgsCoordinateReferenceSystem, boxes: np.ndarray, scores, labels, statuses, model_path: str
) -> Path:
    """Write a crown GeoPackage atomically (core.crown_layer): either the whole layer appears at ``path`` or nothing.

    Raises:
        OutputError: If the folder is missing or not writable, or GDAL fails to write.
    """
    crs_wkt = crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL) if crs.isValid() else None
    return write_crown_geopackage(path, crs_wkt, boxes, scores, labels, statuses, model_path)


def write_detections(detections: Detections, path: str | Path, model_path: str) -> Path:
    """Write detected crowns to a GeoPackage atomically, in batches (see core.crown_layer)."""
    statuses = [STATUS_PREDICTED] * len(detections)
    return write_crown_geopackage(path, detections.raster.crs_wkt, detections.boxes, detections.scores,
                                  detections.labels, statuses, model_path)


def open_crowns_layer(path: str | Path, name: str) -> QgsVectorLayer:
    """The crowns of a GeoPackage as a styled, editable layer."""
    layer = QgsVectorLayer(f"{path}|layername={CROWNS_LAYER_NAME}", name, "ogr")
    if not layer.isValid():  # written by Processing, which names the layer after the file
        layer = QgsVectorLayer(str(path), name, "ogr")
    if not layer.isValid():
        raise OutputError(f"the crown layer {path} could not be opened")
    layer.loadNamedStyle(str(CROWNS_STYLE))
    return layer


def unique_path(path: Path) -> Path:
    """``path``, or ``name_2.gpkg``, ``name_3.gpkg``... so no existing file is overwritten."""
    candidate, n = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate


def unique_layer_name(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``...: two layers of one name cannot be told apart in a layer list."""
    taken = set(taken)
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name} ({n})"
        n += 1
    return candidate


def add_to_project(layer: QgsMapLayer) -> None:
    """Add ``layer`` to the current project, renamed by ``unique_layer_name`` if another layer has its name."""
    project = QgsProject.instance()
    layer.setName(unique_layer_name(layer.name(), (other.name() for other in project.mapLayers().values())))
    project.addMapLayer(layer)


def _geometries_in(layer: QgsVectorLayer, target_crs: QgsCoordinateReferenceSystem) -> Iterator[tuple[QgsFeature, QgsGeometry]]:
    """Each feature with a geometry, and that geometry in ``target_crs``."""
    transform = None
    if target_crs.isValid() and layer.crs().isValid() and layer.crs() != target_crs:
        transform = QgsCoordinateTransform(layer.crs(), target_crs, QgsProject.instance())
    for feature in layer.getFeatures(QgsFeatureRequest()):
        geometry = feature.geometry()
        if geometry is None or geometry.isEmpty():
            continue
        if transform is not None:
            geometry.transform(transform)
        yield feature, geometry


def layer_boxes(
    layer: QgsVectorLayer,
    target_crs: QgsCoordinateReferenceSystem,
    label_field: str | None = "label",
    default_label: str | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Bounding boxes of a layer's features in ``target_crs``, with their labels.

    Labels come from ``label_field`` when the layer has it, else ``default_label``.

    Raises:
        AnnotationError: If a feature has no label and no default is known.
    """
    has_field = bool(label_field) and layer.fields().indexOf(label_field) >= 0
    boxes, labels = [], []
    for feature, geometry in _geometries_in(layer, target_crs):
        rect = geometry.boundingBox()
        label = feature[label_field] if has_field else default_label
        if label in (None, "") or (hasattr(label, "isNull") and label.isNull()):
            label = default_label
        if label is None:
            raise AnnotationError(
                f"feature {feature.id()} of layer '{layer.name()}' has no label; fill its '{label_field}' field"
            )
        boxes.append([rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()])
        labels.append(str(label))
    return np.array(boxes, dtype=float).reshape(-1, 4), tuple(labels)


def layer_areas(layer: QgsVectorLayer, target_crs: QgsCoordinateReferenceSystem) -> list[BaseGeometry]:
    """A polygon layer's features (reviewed areas, plots, stands) as shapely polygons in ``target_crs``."""
    areas = []
    for _feature, geometry in _geometries_in(layer, target_crs):
        if geometry.type() != QgsWkbTypes.PolygonGeometry:
            kind = QgsWkbTypes.geometryDisplayString(geometry.type()).lower()
            raise AnnotationError(f"layer '{layer.name()}' holds {kind}s; areas must be polygons")
        if QgsWkbTypes.isCurvedType(geometry.wkbType()):
            geometry.convertToStraightSegment()
        area = shapely_wkb.loads(bytes(geometry.asWkb()))
        areas.append(area if area.is_valid else area.buffer(0))
    return areas
