"""Scoring detections against reference crowns with DeepForest's protocol.

Per image, predictions and reference boxes are paired one-to-one by the
Hungarian algorithm on their overlap; a pair is a true positive when its IoU is
above the threshold (0.4 by default). Precision is true positives over
predictions, recall true positives over reference crowns, summed over images.

An "image" may be a whole layer of a hundred thousand crowns, so the pairing is
not solved as one predictions x references matrix: boxes that share no area
cannot pair, and the total IoU is the sum over groups of boxes linked by
overlaps, so each group is solved on its own with the same result. A closed
canopy can link thousands of crowns into one group; a group too large for one
matrix is paired on its pairs above the threshold only (the ones that can
count), which differs from one big matrix only where a box overlaps two others
above the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .boxes import overlapping_pairs, paired_iou

DEFAULT_IOU_THRESHOLD = 0.4

# A group of overlapping boxes larger than this (predictions x references) is paired
# on its pairs above the IoU threshold only, which are the ones that can count.
_LARGEST_GROUP = 1_000_000


@dataclass(frozen=True)
class ImageMatches:
    """The outcome for one image: which prediction matched which reference crown."""

    matched_pairs: np.ndarray  # (K, 2) prediction index, reference index
    matched_iou: np.ndarray
    false_positives: np.ndarray  # prediction indices with no match
    missed: np.ndarray  # reference indices with no match
    label_agreement: np.ndarray  # per matched pair: same label?


@dataclass(frozen=True)
class EvaluationResult:
    """Summed counts and scores over all images."""

    true_positives: int
    false_positives: int
    missed: int
    iou_threshold: float
    per_image: dict[str, ImageMatches] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 0.0

    @property
    def recall(self) -> float:
        reference = self.true_positives + self.missed
        return self.true_positives / reference if reference else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def averaged_over_images(self) -> dict[str, float]:
        """Precision, recall and F1 as DeepForest reports them: averaged over images (see ``averaged_over_images``)."""
        return averaged_over_images(
            [(len(m.matched_pairs), len(m.false_positives), len(m.missed)) for m in self.per_image.values()])

    def as_dict(self) -> dict[str, float]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "missed": self.missed,
            "iou_threshold": self.iou_threshold,
        }


def averaged_over_images(counts: Sequence[tuple[int, int, int]]) -> dict[str, float]:
    """Precision and recall averaged over images, and the F1 of the two averages.

    This is how DeepForest's own evaluation reports a set of images. Summed counts weigh an image
    by its crowns; this weighs every image alike, so a small image the model fails on counts as
    much as a large one. As in DeepForest, an image without predictions has no precision and is
    left out of the precision's average. ``counts`` holds (true positives, false positives,
    missed) per image.
    """
    precisions = [tp / (tp + fp) for tp, fp, _ in counts if tp + fp]
    recalls = [tp / (tp + missed) if tp + missed else 0.0 for tp, _, missed in counts]
    precision = sum(precisions) / len(precisions) if precisions else 0.0
    recall = sum(recalls) / len(recalls) if recalls else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def match_boxes(
    predicted: np.ndarray,
    reference: np.ndarray,
    predicted_labels: tuple[str, ...] | None = None,
    reference_labels: tuple[str, ...] | None = None,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
) -> ImageMatches:
    """One-to-one matching of one image's predictions to its reference crowns."""
    predicted = np.asarray(predicted, dtype=float).reshape(-1, 4)
    reference = np.asarray(reference, dtype=float).reshape(-1, 4)
    rows, cols = overlapping_pairs(predicted, reference)
    iou = paired_iou(predicted[rows], reference[cols])
    chosen = _best_one_to_one(rows, cols, iou, iou_threshold)
    good = chosen[iou[chosen] > iou_threshold]
    pairs = np.stack([rows[good], cols[good]], axis=1).astype(np.int64)
    ious = iou[good]
    false_positives = np.setdiff1d(np.arange(len(predicted)), pairs[:, 0])
    missed = np.setdiff1d(np.arange(len(reference)), pairs[:, 1])
    if predicted_labels is not None and reference_labels is not None:
        agreement = np.array([predicted_labels[p] == reference_labels[r] for p, r in pairs], dtype=bool)
    else:
        agreement = np.ones(len(pairs), dtype=bool)
    return ImageMatches(pairs, ious, false_positives, missed, agreement)


def _best_one_to_one(
    rows: np.ndarray, cols: np.ndarray, iou: np.ndarray, iou_threshold: float, may_narrow: bool = True
) -> np.ndarray:
    """Which candidate pairs (prediction ``rows``, reference ``cols``) a one-to-one pairing of
    largest total IoU uses, solved group by group of boxes linked by candidate pairs."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    # Graph nodes: predictions first, then references.
    offset = int(rows.max()) + 1
    nodes = offset + int(cols.max()) + 1
    graph = coo_matrix((np.ones(len(rows)), (rows, offset + cols)), shape=(nodes, nodes))
    _, group_of_node = connected_components(graph, directed=False)
    group = group_of_node[rows]
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    chosen = []
    for members in np.split(order, bounds):
        if len(members) == 1:  # one prediction overlapping one reference crown
            chosen.append(members)
            continue
        group_rows, row_at = np.unique(rows[members], return_inverse=True)
        group_cols, col_at = np.unique(cols[members], return_inverse=True)
        if may_narrow and len(group_rows) * len(group_cols) > _LARGEST_GROUP:
            countable = members[iou[members] > iou_threshold]
            narrowed = _best_one_to_one(rows[countable], cols[countable], iou[countable], iou_threshold, False)
            chosen.append(countable[narrowed])
            continue
        matrix = np.zeros((len(group_rows), len(group_cols)))
        matrix[row_at, col_at] = iou[members]
        pair_at = np.full(matrix.shape, -1)
        pair_at[row_at, col_at] = members
        picked_rows, picked_cols = linear_sum_assignment(matrix, maximize=True)
        picked = pair_at[picked_rows, picked_cols]
        chosen.append(picked[picked >= 0])
    return np.concatenate(chosen)


def evaluate(
    predictions: dict[str, np.ndarray],
    references: dict[str, np.ndarray],
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
) -> EvaluationResult:
    """Score predictions against references, both keyed by image.

    An image with reference crowns but no predictions counts every crown as missed,
    and the other way round.
    """
    per_image = {}
    tp = fp = fn = 0
    for image in sorted(set(predictions) | set(references)):
        matches = match_boxes(
            predictions.get(image, np.zeros((0, 4))), references.get(image, np.zeros((0, 4))), iou_threshold=iou_threshold
        )
        per_image[image] = matches
        tp += len(matches.matched_pairs)
        fp += len(matches.false_positives)
        fn += len(matches.missed)
    return EvaluationResult(tp, fp, fn, iou_threshold, per_image)
