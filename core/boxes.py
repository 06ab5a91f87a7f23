"""Axis-aligned box arithmetic and the merge of detections from overlapping windows.

Boxes are ``(N, 4)`` float arrays of ``xmin, ymin, xmax, ymax``.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms

from .tiling import Window


def areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas, shape (len(a), len(b))."""
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(width, 0, None) * np.clip(height, 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union, shape (len(a), len(b))."""
    inter = intersections(a, b)
    union = areas(a)[:, None] + areas(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


# A crop keeps a box when at least this share of the box lies inside the crop.
MIN_VISIBLE_SHARE = 0.45
MIN_BOX_SIDE_PX = 2.0


def crop_boxes(boxes: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes shifted into the crop ``(x0, y0)-(x1, y1)`` and clipped to it, and which were kept.

    A box is dropped when less than ``MIN_VISIBLE_SHARE`` of it lies in the crop or what is
    left is thinner than ``MIN_BOX_SIDE_PX``.
    """
    if len(boxes) == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=bool)
    shifted = boxes - np.array([x0, y0, x0, y0])
    clipped = shifted.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, x1 - x0)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, y1 - y0)
    visible = areas(clipped) / np.maximum(areas(shifted), 1e-9)
    sides_ok = ((clipped[:, 2] - clipped[:, 0]) >= MIN_BOX_SIDE_PX) & ((clipped[:, 3] - clipped[:, 1]) >= MIN_BOX_SIDE_PX)
    keep = (visible >= MIN_VISIBLE_SHARE) & sides_ok
    return clipped[keep], keep


def boxes_inside(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Which boxes have their centre inside one of the region boxes."""
    if len(boxes) == 0 or len(regions) == 0:
        return np.zeros(len(boxes), dtype=bool)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (
        (cx[:, None] >= regions[None, :, 0]) & (cx[:, None] <= regions[None, :, 2])
        & (cy[:, None] >= regions[None, :, 1]) & (cy[:, None] <= regions[None, :, 3])
    )
    return inside.any(axis=1)


def cut_by_interior_edge(
    boxes: np.ndarray, window: Window, raster_width: int, raster_height: int, tolerance: float
) -> np.ndarray:
    """Which boxes touch an edge of ``window`` that lies inside the raster.

    Such a box may be a crown cut in two by the window; a neighbouring window that
    overlaps may hold the whole crown.
    """
    cut = np.zeros(len(boxes), dtype=bool)
    if window.col_off > 0:
        cut |= boxes[:, 0] <= window.col_off + tolerance
    if window.row_off > 0:
        cut |= boxes[:, 1] <= window.row_off + tolerance
    if window.col_end < raster_width:
        cut |= boxes[:, 2] >= window.col_end - tolerance
    if window.row_end < raster_height:
        cut |= boxes[:, 3] >= window.row_end - tolerance
    return cut


def merge_window_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    cut: np.ndarray,
    nms_threshold: float,
    containment: float = 0.6,
) -> np.ndarray:
    """Indices of the detections to keep after merging overlapping windows.

    First a box cut by an interior window edge is dropped when another box of the
    same class, not cut, covers at least ``containment`` of it: that is the fuller
    copy of the same crown from the neighbouring window. Then class-aware NMS
    removes the remaining duplicates.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = np.ones(len(boxes), dtype=bool)
    cut_idx = np.flatnonzero(cut)
    whole_idx = np.flatnonzero(~cut)
    if len(cut_idx) and len(whole_idx):
        inter = intersections(boxes[cut_idx], boxes[whole_idx])
        covered = inter / np.maximum(areas(boxes[cut_idx]), 1e-12)[:, None]
        same_class = labels[cut_idx][:, None] == labels[whole_idx][None, :]
        keep[cut_idx[((covered >= containment) & same_class).any(axis=1)]] = False
    remaining = np.flatnonzero(keep)
    kept = batched_nms(
        torch.as_tensor(boxes[remaining], dtype=torch.float32),
        torch.as_tensor(scores[remaining], dtype=torch.float32),
        torch.as_tensor(labels[remaining], dtype=torch.int64),
        nms_threshold,
    ).numpy()
    return np.sort(remaining[kept])
