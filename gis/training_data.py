"""Turning QGIS layers (rasters, crown boxes, reviewed-area polygons) into the engine's training data."""

from __future__ import annotations

from qgis.core import QgsRasterLayer, QgsVectorLayer

from ..core.annotations import ImageAnnotations, from_map_boxes
from ..core.errors import AnnotationError
from .layers import layer_areas, layer_boxes


def _on_extent(boxes, extent) -> list[int]:
    return [
        i
        for i, (x0, y0, x1, y1) in enumerate(boxes)
        if x1 > extent.xMinimum() and x0 < extent.xMaximum() and y1 > extent.yMinimum() and y0 < extent.yMaximum()
    ]


def annotations_for_rasters(
    rasters: list[QgsRasterLayer],
    crowns: QgsVectorLayer,
    label_field: str | None = "label",
    regions: QgsVectorLayer | None = None,
    default_label: str | None = None,
) -> tuple[list[ImageAnnotations], list[str]]:
    """One :class:`ImageAnnotations` per raster that has crowns or reviewed areas on it.

    Returns:
        The annotations, and warnings about rasters that were left out.

    Raises:
        AnnotationError: If the crown layer is empty or none of its crowns lie on any raster.
    """
    if crowns.featureCount() == 0:
        raise AnnotationError(f"the annotation layer '{crowns.name()}' has no features; draw or import crowns first")
    items, warnings = [], []
    for raster in rasters:
        crs = raster.crs()
        boxes, labels = layer_boxes(crowns, crs, label_field, default_label)
        extent = raster.extent()
        on_raster = _on_extent(boxes, extent)
        areas = None
        if regions is not None:
            all_areas = layer_areas(regions, crs)
            areas = [all_areas[i] for i in _on_extent([a.bounds for a in all_areas], extent)]
        if not on_raster and not areas:
            warnings.append(f"no crowns lie on raster '{raster.name()}'; it was left out")
            continue
        items.append(from_map_boxes(raster.source(), boxes[on_raster], tuple(labels[i] for i in on_raster), areas))
    if not items:
        raise AnnotationError(
            f"none of the {crowns.featureCount()} crowns of '{crowns.name()}' lie on the chosen raster(s); "
            "check that they cover the same area"
        )
    return items, warnings
