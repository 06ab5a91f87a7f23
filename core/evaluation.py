"""Scoring detections against reference crowns with DeepForest's protocol.

Per image, predictions and reference boxes are paired one-to-one by the
Hungarian algorithm on their overlap; a pair is a true positive when its IoU is
above the threshold (0.4 by default). Precision is true positives over
predictions, recall true positives over reference crowns, summed over images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .boxes import iou_matrix

DEFAULT_IOU_THRESHOLD = 0.4


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
    pairs = np.zeros((0, 2), dtype=np.int64)
    ious = np.zeros(0)
    if len(predicted) and len(reference):
        iou = iou_matrix(predicted, reference)
        rows, cols = linear_sum_assignment(iou, maximize=True)
        good = iou[rows, cols] > iou_threshold
        pairs = np.stack([rows[good], cols[good]], axis=1).astype(np.int64)
        ious = iou[rows[good], cols[good]]
    false_positives = np.setdiff1d(np.arange(len(predicted)), pairs[:, 0])
    missed = np.setdiff1d(np.arange(len(reference)), pairs[:, 1])
    if predicted_labels is not None and reference_labels is not None:
        agreement = np.array([predicted_labels[p] == reference_labels[r] for p, r in pairs], dtype=bool)
    else:
        agreement = np.ones(len(pairs), dtype=bool)
    return ImageMatches(pairs, ious, false_positives, missed, agreement)


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
