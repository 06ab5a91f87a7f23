"""Axis-aligned box arithmetic and the merge of detections from overlapping windows.

Boxes are ``(N, 4)`` float arrays of ``xmin, ymin, xmax, ymax``.
"""

from __future__ import annotations

import numpy as np

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


def paired_intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection area of each box of ``a`` with the box of ``b`` in the same row."""
    width = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    height = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    return np.clip(width, 0, None) * np.clip(height, 0, None)


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of each box of ``a`` with the box of ``b`` in the same row."""
    inter = paired_intersections(a, b)
    union = areas(a) + areas(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


# Below this many box pairs, overlapping_pairs compares every pair at once (measured faster
# up to about 500 x 500 boxes on this project's CPU; the grid wins above).
DENSE_PAIRS_LIMIT = 250_000


def overlapping_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(i, j)`` of every box ``a[i]`` that shares some area with a box ``b[j]``.

    Unlike ``iou_matrix``, memory and time grow with the number of boxes and their
    neighbours, not with ``len(a) * len(b)``: a whole orthophoto's detections (hundreds of
    thousands of crowns) would need terabytes as a dense matrix. Boxes are binned into a
    grid of cells twice the median box side; only boxes sharing a cell are compared.
    Up to ``DENSE_PAIRS_LIMIT`` pairs (one patch's detections) a dense comparison gives the
    same pairs, in the same order, about twice as fast.
    """
    a = np.asarray(a, dtype=float).reshape(-1, 4)
    b = np.asarray(b, dtype=float).reshape(-1, 4)
    none = np.zeros(0, dtype=np.int64)
    if len(a) == 0 or len(b) == 0:
        return none, none
    if len(a) * len(b) <= DENSE_PAIRS_LIMIT:
        i, j = np.nonzero(intersections(a, b) > 0)
        return i.astype(np.int64), j.astype(np.int64)
    both = np.concatenate([a, b])
    sides = np.maximum(both[:, 2] - both[:, 0], both[:, 3] - both[:, 1])
    if not (sides > 0).any():
        return none, none  # boxes without area share none
    cell = 2.0 * float(np.median(sides[sides > 0]))
    origin = both[:, :2].min(axis=0)
    first = np.floor((both[:, :2] - origin) / cell).astype(np.int64)
    last = np.maximum(np.floor((both[:, 2:] - origin) / cell).astype(np.int64), first)
    span = last - first + 1
    cells_per_box = span[:, 0] * span[:, 1]
    # One entry per (box, cell it covers).
    box = np.repeat(np.arange(len(both)), cells_per_box)
    step = np.arange(len(box)) - np.repeat(np.cumsum(cells_per_box) - cells_per_box, cells_per_box)
    cell_x = first[box, 0] + step % span[box, 0]
    cell_y = first[box, 1] + step // span[box, 0]
    cell_id = cell_x * (int(cell_y.max()) + 1) + cell_y
    order = np.argsort(cell_id, kind="stable")
    cell_id, box = cell_id[order], box[order]
    # Entries of one cell are now contiguous: compare each entry with the ones 1, 2, ... after it.
    found_i, found_j = [], []
    offset = 1
    while offset < len(box):
        same_cell = cell_id[:-offset] == cell_id[offset:]
        if not same_cell.any():
            break
        first_box, second_box = box[:-offset][same_cell], box[offset:][same_cell]
        from_a_to_b = (first_box < len(a)) & (second_box >= len(a))
        from_b_to_a = (first_box >= len(a)) & (second_box < len(a))
        found_i += [first_box[from_a_to_b], second_box[from_b_to_a]]
        found_j += [second_box[from_a_to_b] - len(a), first_box[from_b_to_a] - len(a)]
        offset += 1
    if not found_i:
        return none, none
    # A pair sharing several cells was found once per cell.
    key = np.unique(np.concatenate(found_i) * len(b) + np.concatenate(found_j))
    i, j = key // len(b), key % len(b)
    overlapping = paired_intersections(a[i], b[j]) > 0
    return i[overlapping], j[overlapping]


def class_aware_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices (sorted) of the boxes greedy non-maximum suppression keeps, class by class.

    The same result as torchvision's ``batched_nms`` (a box is dropped when a better-scored
    box of its class overlaps it with IoU above the threshold), but it compares only boxes
    that overlap, so it scales to a whole orthophoto.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    i, j = overlapping_pairs(boxes, boxes)
    candidate = (i < j) & (labels[i] == labels[j])
    i, j = i[candidate], j[candidate]
    suppressing = paired_iou(boxes[i], boxes[j]) > iou_threshold
    i, j = i[suppressing], j[suppressing]
    # Neighbour lists: for every box, the boxes it would suppress (or be suppressed by).
    source, target = np.concatenate([i, j]), np.concatenate([j, i])
    order = np.argsort(source, kind="stable")
    source, target = source[order], target[order]
    starts = np.searchsorted(source, np.arange(len(boxes) + 1))
    suppressed = np.zeros(len(boxes), dtype=bool)
    kept = []
    for index in np.argsort(-np.asarray(scores), kind="stable"):
        if suppressed[index]:
            continue
        kept.append(index)
        suppressed[target[starts[index] : starts[index + 1]]] = True
    return np.sort(np.array(kept, dtype=np.int64))


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
    i, j = overlapping_pairs(boxes[cut_idx], boxes[whole_idx])
    cut_boxes = boxes[cut_idx[i]]
    covered = paired_intersections(cut_boxes, boxes[whole_idx[j]]) / np.maximum(areas(cut_boxes), 1e-12)
    same_class = labels[cut_idx[i]] == labels[whole_idx[j]]
    keep[cut_idx[i[(covered >= containment) & same_class]]] = False
    remaining = np.flatnonzero(keep)
    kept = class_aware_nms(boxes[remaining], scores[remaining], labels[remaining], nms_threshold)
    return remaining[kept]
