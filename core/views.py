"""Test-time augmentation: detect on four turned views of a patch and fuse the results.

A crown seen from above has no "up": the network should find it however the patch
is turned. Running it on the patch turned by 0, 90, 180 and 270 degrees and fusing
the boxes gives steadier scores and box edges than one pass, at four times the
network cost. (All eight symmetries of the square, reflections too, scored a little
higher on the validation plots but cost twice as much again: see model/DIARY.md.) Fusion is a
weighted box fusion: boxes of the same class from different views that overlap
form one crown, its box is their score-weighted mean, and its score is the sum of
each view's best score divided by the number of views, so a crown that only one
view sees gets a low score.

A checkpoint can also ask for the four turns at several scales (``view_scales``):
the raster is read again at each scale, through the same windows (see
``core.prediction``), and the crowns each scale found are fused the same way
(``fuse_scales``). Crowns are bigger at some sites than at others; reading at 1 and
1.25 times the model's ground resolution raised F1 on sites the model had never seen
(model/DIARY.md), at about twice the cost of one scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .boxes import overlapping_pairs, paired_iou

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
# The views detection uses: the patch turned by 0, 180, 90 and 270 degrees.
ROTATIONS = (IDENTITY, Symmetry(False, True, True), Symmetry(True, True, False), Symmetry(True, False, True))


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
    # Pairs (later, earlier) in score order that are the same crown; sparse, so that fusing a
    # whole orthophoto's detections (fuse_scales) needs no len x len matrix.
    later, earlier = overlapping_pairs(boxes, boxes)
    same = (later > earlier) & (labels[later] == labels[earlier])
    later, earlier = later[same], earlier[same]
    same = paired_iou(boxes[later], boxes[earlier]) > iou_threshold
    later, earlier = later[same], earlier[same]
    by_box = np.lexsort((earlier, later))
    later, earlier = later[by_box], earlier[by_box]
    starts = np.searchsorted(later, np.arange(len(boxes) + 1))
    # Greedy clustering in score order: a box joins the best-scored crown it overlaps.
    cluster = np.full(len(boxes), -1)
    leaders: list[int] = []
    leader_cluster: dict[int, int] = {}
    for i in range(len(boxes)):
        for j in earlier[starts[i] : starts[i + 1]]:
            if j in leader_cluster:
                cluster[i] = leader_cluster[j]
                break
        else:
            cluster[i] = len(leaders)
            leader_cluster[i] = len(leaders)
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


def fuse_scales(
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], score_threshold: float, iou_threshold: float = FUSION_IOU
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted box fusion of the (boxes, scores, labels) each scale found in the same pixels.

    With several scales, each scale's detections should reach down to ``VIEW_SCORE_FLOOR``;
    only fused crowns scoring ``score_threshold`` or more are returned. A single scale's
    detections come back as they are.
    """
    if len(found) == 1:
        return found[0]
    boxes = np.concatenate([np.asarray(b, dtype=float).reshape(-1, 4) for b, _, _ in found])
    scores = np.concatenate([np.asarray(s, dtype=float) for _, s, _ in found])
    labels = np.concatenate([np.asarray(lab, dtype=np.int64) for _, _, lab in found])
    scale_ids = np.concatenate([np.full(len(s), k) for k, (_, s, _) in enumerate(found)])
    boxes, scores, labels = fuse_views(boxes, scores, labels, scale_ids, len(found), iou_threshold)
    keep = scores >= score_threshold
    return boxes[keep], scores[keep], labels[keep]


def detect_in_views(network: torch.nn.Module, images: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """Detections on (N, 3, S, S) 0-1 patches, each seen in its four turned views and fused.

    Each view keeps its detections down to ``VIEW_SCORE_FLOOR``; the network's own
    score threshold then applies to the fused scores.
    """
    size = images.shape[-1]
    if images.shape[-2] != size:
        raise ValueError(f"turned views need square patches, got {tuple(images.shape[-2:])}")
    final_threshold = network.score_thresh
    network.score_thresh = min(final_threshold, VIEW_SCORE_FLOOR)
    try:
        with torch.inference_mode():
            views = torch.cat([apply_symmetry(images, symmetry) for symmetry in ROTATIONS])
            outputs = network(list(views))
    finally:
        network.score_thresh = final_threshold
    count = len(images)
    results = []
    for i in range(count):
        per_view = [outputs[v * count + i] for v in range(len(ROTATIONS))]
        boxes = np.concatenate(
            [undo_symmetry(out["boxes"].float().cpu().numpy(), symmetry, size) for out, symmetry in zip(per_view, ROTATIONS)]
        )
        scores = np.concatenate([out["scores"].float().cpu().numpy() for out in per_view])
        labels = np.concatenate([out["labels"].cpu().numpy() for out in per_view])
        view_ids = np.concatenate([np.full(len(out["scores"]), v) for v, out in enumerate(per_view)])
        fused_boxes, fused_scores, fused_labels = fuse_views(boxes, scores, labels, view_ids, len(ROTATIONS))
        keep = fused_scores >= final_threshold
        results.append({"boxes": fused_boxes[keep], "scores": fused_scores[keep], "labels": fused_labels[keep]})
    return results
