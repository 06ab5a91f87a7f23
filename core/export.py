"""Exporting annotated rasters as a training set other tools read: image chips, DeepForest CSV, COCO JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window as RioWindow
from rasterio.windows import transform as window_transform

from .annotations import ImageAnnotations, annotated_areas, crowns_centred_in, outline_of, write_coco, write_deepforest_csv
from .areas import area_mask
from .boxes import crop_boxes
from .errors import AnnotationError, OutputError
from .tiling import Window, window_grid


@dataclass(frozen=True)
class ExportSummary:
    folder: Path
    chips: int
    crowns: int
    csv_path: Path
    coco_path: Path


def export_training_set(
    items: list[ImageAnnotations], folder: str | Path, chip_size: int = 400, overlap: float = 0.0
) -> ExportSummary:
    """Cut the annotated regions of each raster into georeferenced GeoTIFF chips with their boxes.

    Boxes are in chip pixels. A box mostly outside a chip is left out of it. Chips without a
    crown are kept: inside a fully annotated area they are true background. Where an area
    is not a rectangle, chip pixels outside it are black and crowns centred outside it left out.

    Raises:
        OutputError: If the folder cannot be created.
        AnnotationError: If there is nothing to export.
    """
    folder = Path(folder)
    try:
        (folder / "images").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the export folder {folder}: {exc.strerror or exc}") from exc
    if not items:
        raise AnnotationError("there is nothing to export: no annotated raster was given")
    chips: list[ImageAnnotations] = []
    sizes: dict[str, tuple[int, int]] = {}
    for item in items:
        with rasterio.open(item.image_path) as src:
            for region, area in annotated_areas(item, src.width, src.height):
                outline = outline_of(area)
                crowns = item if outline is None else crowns_centred_in(item, outline)
                for w in window_grid(region.width, region.height, chip_size, overlap):
                    col, row = region.col_off + w.col_off, region.row_off + w.row_off
                    rio_window = RioWindow(col, row, w.width, w.height)
                    name = f"{Path(item.image_path).stem}_{col}_{row}.tif"
                    profile = {
                        **src.profile,
                        "width": w.width,
                        "height": w.height,
                        "transform": window_transform(rio_window, src.transform),
                        "driver": "GTiff",
                        "compress": "deflate",
                    }
                    for key in ("blockxsize", "blockysize", "tiled"):
                        profile.pop(key, None)
                    pixels = src.read(window=rio_window)
                    if outline is not None:  # outside the reviewed polygon nothing is known: black it out
                        pixels = pixels * area_mask(outline, Window(col, row, w.width, w.height), w.width, w.height)[None]
                    with rasterio.open(folder / "images" / name, "w", **profile) as dst:
                        dst.write(pixels)
                    boxes, keep = crop_boxes(crowns.boxes, col, row, col + w.width, row + w.height)
                    chip_path = f"images/{name}"
                    chips.append(ImageAnnotations(chip_path, boxes, tuple(np.array(crowns.labels, dtype=object)[keep])))
                    sizes[chip_path] = (w.width, w.height)
    csv_path, coco_path = folder / "annotations.csv", folder / "annotations_coco.json"
    write_deepforest_csv([c for c in chips if len(c.labels)], csv_path)
    write_coco(chips, coco_path, sizes)
    return ExportSummary(folder, len(chips), sum(len(c.labels) for c in chips), csv_path, coco_path)
