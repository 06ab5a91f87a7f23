"""Crown boxes as training and evaluation data: file formats and pixel <-> map coordinates.

Inside the engine, an image's boxes are pixel corners of that raster
(``xmin, ymin, xmax, ymax``; origin at the top-left corner of the top-left pixel,
rows growing downwards), the convention of DeepForest's CSV.
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from shapely.geometry.base import BaseGeometry

from .areas import areas_to_pixels, as_areas, centres_inside, is_rectangle
from .errors import AnnotationError
from .raster import RasterInfo, RasterReader
from .tiling import Window

DEEPFOREST_CSV_COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


@dataclass(frozen=True)
class ImageAnnotations:
    """The crowns drawn on one raster.

    ``regions`` are the reviewed areas, pixel-coordinate polygons where every crown was
    drawn (core.areas); anything inside them that is not a crown is background. ``None``
    means the whole raster. An (R, 4) array of boxes is accepted and becomes rectangles.
    Training reads a raster without georeference at ``pixel_size_m``, or else as if it were
    at the model's own resolution.
    """

    image_path: str
    boxes: np.ndarray
    labels: tuple[str, ...]
    regions: tuple[BaseGeometry, ...] | None = None
    # Metres per pixel of a raster that carries no georeference (from a plot list, say);
    # ignored when the raster states its own.
    pixel_size_m: float | None = None

    def __post_init__(self) -> None:
        if self.boxes.shape != (len(self.labels), 4):
            raise AnnotationError(
                f"{self.image_path}: {len(self.labels)} labels for {len(self.boxes)} boxes; each box needs one label"
            )
        if self.regions is not None:
            object.__setattr__(self, "regions", as_areas(self.regions))


def annotated_areas(item: ImageAnnotations, width: int, height: int) -> list[tuple[Window, BaseGeometry | None]]:
    """Pixel windows of the fully annotated areas of a raster, each with its area.

    The whole raster (area ``None``) if no area is marked; areas under two pixels wide are skipped.
    """
    if item.regions is None:
        return [(Window(0, 0, width, height), None)]
    found = []
    for area in item.regions:
        if area.is_empty:
            continue
        x0, y0, x1, y1 = area.bounds
        c0, r0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
        c1, r1 = min(int(math.ceil(x1)), width), min(int(math.ceil(y1)), height)
        if c1 - c0 >= 2 and r1 - r0 >= 2:
            found.append((Window(c0, r0, c1 - c0, r1 - r0), area))
    return found


def outline_of(area: BaseGeometry | None) -> BaseGeometry | None:
    """The area when it is a polygon that does not fill its bounding box, else None (nothing to black out)."""
    return area if area is not None and not is_rectangle(area) else None


def crowns_centred_in(item: ImageAnnotations, area: BaseGeometry) -> ImageAnnotations:
    """``item`` with only the crowns whose centre lies inside ``area``."""
    used = centres_inside(item.boxes, [area])
    return replace(item, boxes=item.boxes[used], labels=tuple(label for label, keep in zip(item.labels, used) if keep))


def crowns_in_areas(item: ImageAnnotations) -> np.ndarray:
    """Which of the item's crowns training and scoring use: all, or those centred in its areas."""
    if item.regions is None:
        return np.ones(len(item.labels), dtype=bool)
    return centres_inside(item.boxes, item.regions)


def _transform_corners(boxes: np.ndarray, transform) -> np.ndarray:
    """Apply a point transform to both corners of each box and re-order them to min/max."""
    if len(boxes) == 0:
        return np.zeros((0, 4))
    x0, y0 = transform(boxes[:, 0], boxes[:, 1])
    x1, y1 = transform(boxes[:, 2], boxes[:, 3])
    return np.stack([np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1)], axis=1)


def pixel_boxes_to_map(pixel_boxes: np.ndarray, info: RasterInfo) -> np.ndarray:
    """Pixel-corner boxes to map-coordinate boxes (``xmin, ymin, xmax, ymax``), exact to the pixel."""
    return _transform_corners(pixel_boxes, info.pixel_to_map)


def map_boxes_to_pixels(map_boxes: np.ndarray, info: RasterInfo) -> np.ndarray:
    """Map-coordinate boxes to pixel-corner boxes (``col_min, row_min, col_max, row_max``)."""
    return _transform_corners(map_boxes, info.map_to_pixel)


def clip_to_raster(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the raster, and which of them kept any area at all."""
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    inside = (clipped[:, 2] - clipped[:, 0] > 0) & (clipped[:, 3] - clipped[:, 1] > 0)
    return clipped, inside


def from_map_boxes(
    raster_path: str,
    map_boxes: np.ndarray,
    labels: tuple[str, ...],
    map_regions: Sequence[BaseGeometry] | np.ndarray | None = None,
) -> ImageAnnotations:
    """Annotations for one raster from boxes and reviewed areas in its CRS (as drawn on QGIS layers).

    Boxes that do not touch the raster are left out; if none touch it, that is an error.
    ``map_regions`` are polygons (or an (R, 4) array of boxes); those off the raster are dropped.

    Raises:
        AnnotationError: If no box lies on the raster.
    """
    with RasterReader(raster_path) as reader:
        info = reader.info
    pixel_boxes, inside = clip_to_raster(map_boxes_to_pixels(np.asarray(map_boxes, dtype=float), info), info.width, info.height)
    if len(map_boxes) and not inside.any():
        raise AnnotationError(
            f"none of the {len(map_boxes)} annotation boxes lies on {raster_path}; "
            "check that the annotations and the raster cover the same area and use the same CRS"
        )
    regions = areas_to_pixels(as_areas(map_regions), info) if map_regions is not None else None
    return ImageAnnotations(
        image_path=raster_path,
        boxes=pixel_boxes[inside],
        labels=tuple(label for label, keep in zip(labels, inside) if keep),
        regions=regions,
    )


def read_deepforest_csv(csv_path: str | Path, image_root: str | Path | None = None) -> list[ImageAnnotations]:
    """Read DeepForest's CSV (``image_path,xmin,ymin,xmax,ymax,label``, pixels, top-left origin).

    Image paths are resolved against ``image_root``, or else the CSV's folder.

    Raises:
        AnnotationError: If a column is missing, a value is not a number, or a box is inverted.
    """
    csv_path = Path(csv_path)
    root = Path(image_root) if image_root is not None else csv_path.parent
    per_image: dict[str, list[tuple[list[float], str]]] = defaultdict(list)
    try:
        with open(csv_path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in DEEPFOREST_CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise AnnotationError(f"{csv_path} lacks column(s) {missing}; DeepForest CSV needs {list(DEEPFOREST_CSV_COLUMNS)}")
            for line_no, row in enumerate(reader, start=2):
                try:
                    box = [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
                except ValueError as exc:
                    raise AnnotationError(f"{csv_path} line {line_no}: coordinates must be numbers ({exc})") from exc
                if box[2] <= box[0] or box[3] <= box[1]:
                    raise AnnotationError(f"{csv_path} line {line_no}: box {box} has xmax <= xmin or ymax <= ymin")
                per_image[row["image_path"]].append((box, row["label"]))
    except OSError as exc:
        raise AnnotationError(f"cannot read annotations {csv_path}: {exc.strerror or exc}") from exc
    if not per_image:
        raise AnnotationError(f"{csv_path} holds no boxes")
    return [
        ImageAnnotations(
            image_path=str((root / name) if not Path(name).is_absolute() else Path(name)),
            boxes=np.array([b for b, _ in rows], dtype=float),
            labels=tuple(label for _, label in rows),
        )
        for name, rows in per_image.items()
    ]


def write_deepforest_csv(annotations: list[ImageAnnotations], csv_path: str | Path) -> None:
    """Write annotations as DeepForest's CSV, image paths as given."""
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DEEPFOREST_CSV_COLUMNS)
        for item in annotations:
            for box, label in zip(item.boxes, item.labels):
                writer.writerow([item.image_path, *(f"{v:g}" for v in box), label])


def read_pascal_voc(xml_path: str | Path, image_root: str | Path | None = None) -> ImageAnnotations:
    """Read one Pascal VOC XML file (``object/bndbox`` in pixels, ``object/name`` as label).

    Raises:
        AnnotationError: If the file is not Pascal VOC or holds a malformed box.
    """
    xml_path = Path(xml_path)
    try:
        # The user's own annotation file. ElementTree never fetches external entities, and the
        # expat in Python 3.11 (2.4.1 and later) limits entity expansion: no XML bomb gets through.
        root = ElementTree.parse(xml_path).getroot()  # nosec B314
    except (OSError, ElementTree.ParseError) as exc:
        raise AnnotationError(f"cannot read Pascal VOC file {xml_path}: {exc}") from exc
    filename = root.findtext("filename")
    if not filename:
        raise AnnotationError(f"{xml_path} has no <filename>; is it a Pascal VOC annotation?")
    boxes, labels = [], []
    for obj in root.iter("object"):
        box_node = obj.find("bndbox")
        if box_node is None:
            raise AnnotationError(f"{xml_path}: an <object> has no <bndbox>")
        try:
            box = [float(box_node.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError as exc:
            raise AnnotationError(f"{xml_path}: a box coordinate is not a number ({exc})") from exc
        label = obj.findtext("name")
        if not label:
            raise AnnotationError(f"{xml_path}: an <object> has no <name>; every box needs a class label")
        boxes.append(box)
        labels.append(label)
    folder = Path(image_root) if image_root is not None else xml_path.parent
    return ImageAnnotations(
        image_path=str(folder / filename),
        boxes=np.array(boxes, dtype=float).reshape(-1, 4),
        labels=tuple(labels),
    )


def read_coco(json_path: str | Path, image_root: str | Path | None = None) -> list[ImageAnnotations]:
    """Read COCO detection JSON (``bbox`` = x, y, width, height in pixels; labels from ``categories``).

    Raises:
        AnnotationError: If the file is not COCO JSON or refers to unknown images or categories.
    """
    import json

    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text())
        images = {img["id"]: img["file_name"] for img in data["images"]}
        categories = {cat["id"]: cat["name"] for cat in data["categories"]}
        annotations = data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnnotationError(f"{json_path} is not COCO detection JSON (needs images, categories, annotations): {exc}") from exc
    root = Path(image_root) if image_root is not None else json_path.parent
    per_image: dict[int, list[tuple[list[float], str]]] = defaultdict(list)
    for ann in annotations:
        if ann.get("image_id") not in images or ann.get("category_id") not in categories:
            raise AnnotationError(f"{json_path}: annotation {ann.get('id')} names an unknown image or category")
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w <= 0 or h <= 0:
            raise AnnotationError(f"{json_path}: annotation {ann.get('id')} has a box of zero or negative size")
        per_image[ann["image_id"]].append(([x, y, x + w, y + h], categories[ann["category_id"]]))
    return [
        ImageAnnotations(
            image_path=str(root / images[image_id]),
            boxes=np.array([b for b, _ in per_image.get(image_id, [])], dtype=float).reshape(-1, 4),
            labels=tuple(label for _, label in per_image.get(image_id, [])),
        )
        for image_id in images
    ]


def write_coco(annotations: list[ImageAnnotations], json_path: str | Path, sizes: dict[str, tuple[int, int]]) -> None:
    """Write annotations as COCO detection JSON; ``sizes`` maps image path to (width, height)."""
    import json

    labels = sorted({label for item in annotations for label in item.labels})
    category_ids = {label: i + 1 for i, label in enumerate(labels)}
    images, boxes = [], []
    for image_id, item in enumerate(annotations, start=1):
        width, height = sizes[item.image_path]
        images.append({"id": image_id, "file_name": Path(item.image_path).name, "width": width, "height": height})
        for box, label in zip(item.boxes, item.labels):
            x0, y0, x1, y1 = (float(v) for v in box)
            boxes.append(
                {
                    "id": len(boxes) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[label],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    document = {
        "images": images,
        "annotations": boxes,
        "categories": [{"id": i, "name": label} for label, i in category_ids.items()],
    }
    Path(json_path).write_text(json.dumps(document, indent=1))
