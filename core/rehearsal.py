"""Rehearsal: while retraining on a few corrected crowns, also train on the unreviewed rest of the imagery.

The crown layer holds the model's own crowns outside the reviewed areas. Cut beside the
corrections (``TrainingSettings.rehearsal_share`` of the patches), they keep the retrained model
close to what the base model found there, so that a plot's corrections teach what differs and do
not make it forget the rest of the site (model card, "Correcting one plot and retraining").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from shapely.geometry import box as rectangle
from shapely.ops import unary_union

from .annotations import ImageAnnotations
from .areas import centres_inside
from .raster import RasterReader

# Unreviewed imagery rehearsed, as a multiple of the reviewed area (and at least a few windows):
# enough to anchor the model, little enough to read into memory whatever the orthophoto's size.
_AREA_MULTIPLE = 4
_FEWEST_WINDOWS = 4
_MOST_WINDOWS = 32
# A window needs this share of its area outside the reviewed areas.
_OUTSIDE_SHARE = 0.5


def unreviewed_rehearsal(
    items: Sequence[ImageAnnotations], ground_resolution_m: float, patch_size: int
) -> list[ImageAnnotations]:
    """For each raster with reviewed areas, the nearby unreviewed windows that hold crowns, with those crowns.

    Windows are one model patch wide, on a grid over the raster; those nearest the reviewed areas
    are taken first (the imagery most like what was corrected), up to four times the reviewed area.
    A window without crowns is left out: it may lie where detection never ran, and teaching that
    its trees are background would be wrong. Rasters trained on whole (no reviewed areas) have no
    unreviewed part.
    """
    rehearsal = []
    for item in items:
        if not item.regions:
            continue
        with RasterReader(item.image_path) as reader:
            info = reader.info
        resolution = info.ground_resolution_m or (item.pixel_size_m or ground_resolution_m,) * 2
        side = max(2, round(patch_size * ground_resolution_m / resolution[0]))
        reviewed = unary_union(item.regions)
        outside = ~centres_inside(item.boxes, item.regions)
        crowns = item.boxes[outside]
        windows = []
        for top in range(0, info.height, side):
            for left in range(0, info.width, side):
                cell = rectangle(left, top, min(left + side, info.width), min(top + side, info.height))
                part = cell.difference(reviewed)
                if part.area < _OUTSIDE_SHARE * side * side or not centres_inside(crowns, [part]).any():
                    continue
                windows.append((cell.centroid.distance(reviewed), top, left, part))
        wanted = max(_FEWEST_WINDOWS, math.ceil(_AREA_MULTIPLE * reviewed.area / side**2))
        chosen = sorted(windows, key=lambda w: w[:3])[: min(wanted, _MOST_WINDOWS)]
        if chosen:
            labels = tuple(label for label, keep in zip(item.labels, outside) if keep)
            rehearsal.append(replace(item, boxes=crowns, labels=labels, regions=tuple(w[3] for w in chosen)))
    return rehearsal
