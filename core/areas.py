"""Reviewed areas: the parts of a raster where every crown was drawn.

Inside an area, whatever is not a crown is background; outside, nothing is known.
An area is any polygon (a rectangle drawn in the review panel, a plot outline, a
stand boundary), not only its bounding box: the pixels of the bounding box that
lie outside the polygon are blacked out before training, and crowns there are
neither learnt from nor scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rasterio.features import rasterize
from rasterio.transform import Affine
from shapely.geometry import Point
from shapely.geometry import box as rectangle
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform as transform_geometry
from shapely.prepared import prep

from .raster import RasterInfo
from .tiling import Window

# An area whose polygon fills this share of its bounding box is treated as that box.
_RECTANGLE_SHARE = 0.999


def as_areas(regions: Sequence[BaseGeometry] | np.ndarray) -> tuple[BaseGeometry, ...]:
    """Areas as polygons; an (R, 4) array of boxes (``xmin, ymin, xmax, ymax``) becomes rectangles."""
    if isinstance(regions, np.ndarray) or not all(isinstance(r, BaseGeometry) for r in regions):
        boxes = np.asarray(regions, dtype=float).reshape(-1, 4)
        return tuple(rectangle(*map(float, b)) for b in boxes)
    return tuple(regions)


def is_rectangle(area: BaseGeometry) -> bool:
    """Whether the area is its own bounding box (nothing to black out)."""
    x0, y0, x1, y1 = area.bounds
    return area.area >= _RECTANGLE_SHARE * (x1 - x0) * (y1 - y0)


def centres_inside(boxes: np.ndarray, areas: Sequence[BaseGeometry]) -> np.ndarray:
    """Which boxes have their centre inside one of the areas."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    inside = np.zeros(len(boxes), dtype=bool)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    for area in areas:
        if area.is_empty:
            continue
        x0, y0, x1, y1 = area.bounds
        candidates = np.flatnonzero(~inside & (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1))
        if is_rectangle(area):
            inside[candidates] = True
            continue
        prepared = prep(area)
        inside[candidates] = [prepared.intersects(Point(cx[i], cy[i])) for i in candidates]
    return inside


def area_mask(area: BaseGeometry, window: Window, out_width: int, out_height: int) -> np.ndarray:
    """Which pixels of ``window``, read at ``out_width`` x ``out_height``, lie inside ``area`` (pixel coordinates)."""
    # Output pixel (u, v) covers raster pixels col_off + u * sx ... and row_off + v * sy ...
    to_raster = Affine(window.width / out_width, 0.0, window.col_off, 0.0, window.height / out_height, window.row_off)
    burnt = rasterize([(area, 1)], out_shape=(out_height, out_width), transform=to_raster, fill=0, dtype="uint8")
    return burnt.astype(bool)


def areas_to_pixels(map_areas: Sequence[BaseGeometry], info: RasterInfo) -> tuple[BaseGeometry, ...]:
    """Areas in the raster's CRS as pixel-coordinate polygons, cut to the raster; those off it are dropped."""
    raster = rectangle(0, 0, info.width, info.height)
    found = []
    for area in map_areas:
        pixels = transform_geometry(lambda xs, ys, z=None: info.map_to_pixel(np.asarray(xs), np.asarray(ys)), area)
        on_raster = pixels.intersection(raster)
        if not on_raster.is_empty and on_raster.area > 0:
            found.append(on_raster)
    return tuple(found)
