"""Bringing existing annotations into a review layer, and exporting reviewed crowns as a training set."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer, QgsVectorLayer

from ..core.annotations import ImageAnnotations, pixel_boxes_to_map, read_coco, read_deepforest_csv, read_pascal_voc
from ..core.errors import AnnotationError
from ..core.export import ExportSummary, export_training_set
from ..core.raster import RasterReader
from .layers import layer_boxes, write_crown_layer
from .review import STATUS_CONFIRMED, existing_reviewed_areas
from .training_data import annotations_for_rasters

ANNOTATION_FILE_FILTER = "Annotations (*.csv *.xml *.json);;DeepForest CSV (*.csv);;Pascal VOC (*.xml);;COCO JSON (*.json)"


def read_annotation_file(path: str | Path, raster_path: str) -> ImageAnnotations:
    """The boxes a DeepForest CSV, Pascal VOC or COCO file gives for the image ``raster_path``.

    A file that describes a single image is taken to describe this raster whatever its
    image name; otherwise the image must have the raster's file name.

    Raises:
        AnnotationError: If the format is unknown or the file has nothing for this raster.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        items = read_deepforest_csv(path)
    elif suffix == ".xml":
        items = [read_pascal_voc(path)]
    elif suffix == ".json":
        items = read_coco(path)
    else:
        raise AnnotationError(f"{path.name}: unknown annotation format; use DeepForest CSV, Pascal VOC XML or COCO JSON")
    if len(items) == 1:
        return items[0]
    name = Path(raster_path).name
    matching = [item for item in items if Path(item.image_path).name == name]
    if not matching:
        names = sorted({Path(item.image_path).name for item in items})
        raise AnnotationError(f"{path.name} has no boxes for image {name}; it describes {names[:5]}")
    return matching[0]


def import_annotations(source: str | QgsVectorLayer, raster: QgsRasterLayer, output: str | Path) -> Path:
    """Write a review layer (status ``confirmed``) from an annotation file or any polygon layer.

    Pixel boxes from files are placed on ``raster`` through its georeferencing; a polygon
    layer contributes the bounding box of each feature, in the raster's CRS.

    Raises:
        AnnotationError: If there is nothing to import.
        OutputError: If the GeoPackage cannot be written.
    """
    with RasterReader(raster.source()) as reader:
        info = reader.info
    if isinstance(source, QgsVectorLayer):
        boxes, labels = layer_boxes(source, raster.crs(), "label", default_label=source.name())
    else:
        item = read_annotation_file(source, raster.source())
        boxes, labels = pixel_boxes_to_map(item.boxes, info), item.labels
    if len(boxes) == 0:
        raise AnnotationError("there are no boxes to import")
    crs = raster.crs() if raster.crs().isValid() else QgsCoordinateReferenceSystem()
    return write_crown_layer(output, crs, boxes, [None] * len(labels), labels, [STATUS_CONFIRMED] * len(labels), "")


def export_layer_as_training_set(
    crowns: QgsVectorLayer, rasters: list[QgsRasterLayer], folder: str | Path, reviewed_only: bool, chip_size: int = 400
) -> ExportSummary:
    """Image chips with DeepForest CSV and COCO JSON from a reviewed crown layer."""
    areas = existing_reviewed_areas(crowns) if reviewed_only else None
    if reviewed_only and areas is None:
        raise AnnotationError(f"'{crowns.name()}' has no reviewed areas yet; mark some, or export every crown")
    items, _warnings = annotations_for_rasters(rasters, crowns, "label", areas)
    return export_training_set(items, folder, chip_size)

