"""Test-time augmentation: detect on the eight symmetric views of a patch and fuse the results.

A crown seen from above has no "up": the network should find it whether the patch
is flipped or turned. Running it on all eight symmetries of the square (the
identity, three rotations, four reflections) and fusing the boxes gives steadier
scores and box edges than one pass, at eight times the network cost. Fusion is a
weighted box fusion: boxes of the same class from different views that overlap
form one crown, its box is their score-weighted mean, and its score is the sum of
each view's best score divided by the number of views, so a crown that only one
view sees gets a low score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .boxes import iou_matrix

# Boxes from different views whose IoU is above this are the same crown.
FUSION_IOU = 0.55
# With views, each view's detections are kept down to this score before fusion.
VIEW_SCORE_FLOOR = 0.05


@dataclass(frozen=True)
class Symmetry:
    """One symmetry of the square: transpose first, then flip columns, then flip rows."""

    transpose: bool
    flip_x: bool
    flip_y: bool


IDENTITY = Symmetry(False, False, False)
ALL_SYMMETRIES = tuple(Symmetry(t, fx, fy) for t in (False, True) for fx in (False, True) for fy in (False, True))


def apply_symmetry(images: torch.Tensor, symmetry: Symmetry) -> torch.Tensor:
    """``images`` (N, C, S, S) seen through ``symmetry``."""
    if symmetry.transpose:
        images = images.transpose(-1, -2)
    if symmetry.flip_x:
        images = images.flip(-1)
    if symmetry.flip_y:
        images = images.flip(-2)
    return images.contiguous()


def undo_symmetry(boxes: np.ndarray, symmetry: Symmetry, size: int) -> np.ndarray:
    """Boxes found on a view of an S x S patch, back in the patch's own pixels."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4).copy()
    if symmetry.flip_y:
        boxes[:, [1, 3]] = size - boxes[:, [3, 1]]
    if symmetry.flip_x:
        boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
    if symmetry.transpose:
        boxes = boxes[:, [1, 0, 3, 2]]
    return boxes


def fuse_views(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    views: np.ndarray,
    view_count: int,
    iou_threshold: float = FUSION_IOU,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted box fusion of one patch's detections from ``view_count`` views.

    Args:
        boxes, scores, labels: All views' detections, in the patch's own pixels.
        views: Which view each detection came from (0 .. view_count - 1).

    Returns:
        Fused boxes, scores (0-1) and labels, one per crown.
    """
    if len(boxes) == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    boxes, scores, labels, views = boxes[order], scores[order], labels[order], views[order]
    overlap = iou_matrix(boxes, boxes) > iou_threshold
    overlap &= labels[:, None] == labels[None, :]
    # Greedy clustering in score order: a box joins the best-scored crown it overlaps.
    cluster = np.full(len(boxes), -1)
    leaders: list[int] = []
    for i in range(len(boxes)):
        if leaders:
            hits = np.flatnonzero(overlap[i, leaders])
            if len(hits):
                cluster[i] = hits[0]
                continue
        cluster[i] = len(leaders)
        leaders.append(i)
    count = len(leaders)
    weights = np.maximum(scores, 1e-6)
    weight_sums = np.bincount(cluster, weights=weights, minlength=count)
    fused_boxes = np.stack(
        [np.bincount(cluster, weights=boxes[:, k] * weights, minlength=count) / weight_sums for k in range(4)], axis=1
    )
    best_per_view = np.zeros((count, view_count))
    np.maximum.at(best_per_view, (cluster, views), scores)
    return fused_boxes, best_per_view.sum(axis=1) / view_count, labels[leaders]
