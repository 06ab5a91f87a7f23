"""Box arithmetic that scales to a whole orthophoto's detections."""

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms
from treecrowns.core import boxes as core_boxes
from treecrowns.core.boxes import class_aware_nms, intersections, merge_window_detections, overlapping_pairs


def random_boxes(rng: np.random.Generator, count: int, extent: float = 500.0) -> np.ndarray:
    """Crown-like boxes of mixed sizes, a few of them large, some touching or degenerate."""
    x0 = rng.uniform(0, extent, count)
    y0 = rng.uniform(0, extent, count)
    width = rng.gamma(2.0, 12.0, count)
    height = width * rng.uniform(0.7, 1.4, count)
    width[: count // 20] *= 8  # a few boxes far larger than the median
    width[-2:] = 0.0  # degenerate boxes overlap nothing
    return np.stack([x0, y0, x0 + width, y0 + height], axis=1)


@pytest.mark.parametrize("dense_limit", [0, core_boxes.DENSE_PAIRS_LIMIT], ids=["grid", "dense"])
def test_overlapping_pairs_are_exactly_the_pairs_that_share_area(dense_limit, monkeypatch):
    monkeypatch.setattr(core_boxes, "DENSE_PAIRS_LIMIT", dense_limit)
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 400), random_boxes(rng, 300)
    b[0] = [a[0, 2], a[0, 1], a[0, 2] + 10, a[0, 3]]  # touches a[0] along an edge: no shared area
    i, j = overlapping_pairs(a, b)
    expected_i, expected_j = np.nonzero(intersections(a, b) > 0)
    assert (0, 0) not in set(zip(expected_i, expected_j))
    # Each pair once, ordered by a's index then b's, whichever way they were found.
    assert i.tolist() == expected_i.tolist() and j.tolist() == expected_j.tolist()


def test_overlapping_pairs_of_nothing():
    i, j = overlapping_pairs(np.zeros((0, 4)), random_boxes(np.random.default_rng(1), 5))
    assert len(i) == len(j) == 0


def test_class_aware_nms_keeps_what_torchvision_keeps():
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, 600, extent=300.0)
    scores = rng.permutation(len(boxes)) / len(boxes)  # distinct scores: no ties to order
    labels = rng.integers(0, 3, len(boxes))
    for threshold in (0.2, 0.5):
        expected = batched_nms(
            torch.as_tensor(boxes, dtype=torch.float32),
            torch.as_tensor(scores, dtype=torch.float32),
            torch.as_tensor(labels),
            threshold,
        ).numpy()
        assert class_aware_nms(boxes, scores, labels, threshold).tolist() == sorted(expected.tolist())


def test_merging_a_whole_orthophotos_detections_keeps_one_box_per_crown():
    """About 300 ha of crowns seen twice in overlapping windows: 180,000 detections.

    As dense matrices the cut-copy check and the suppression would need tens of GiB.
    """
    rng = np.random.default_rng(3)
    side = 300  # crowns per row and column, 6 m apart: 1.8 km x 1.8 km at 10 cm
    x, y = np.meshgrid(np.arange(side) * 60.0, np.arange(side) * 60.0)
    crowns = np.stack([x.ravel(), y.ravel(), x.ravel() + 40, y.ravel() + 40], axis=1)
    copies = crowns + rng.normal(0, 1.5, crowns.shape)  # the neighbouring window's copy
    boxes = np.concatenate([crowns, copies])
    scores = np.concatenate([np.full(len(crowns), 0.9), np.full(len(copies), 0.6)]) + rng.uniform(0, 0.01, len(boxes))
    labels = np.zeros(len(boxes), dtype=np.int64)
    cut = np.zeros(len(boxes), dtype=bool)
    cut[len(crowns) :: 7] = True  # some copies touch a window edge
    kept = merge_window_detections(boxes, scores, labels, cut, nms_threshold=0.4)
    assert len(kept) == len(crowns)
    assert (kept < len(crowns)).all()  # the better-scored whole crowns survive
