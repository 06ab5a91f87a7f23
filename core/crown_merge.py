"""Merging the crowns found window by window into one crown per tree, a band of the raster at a time.

Overlapping windows see a crown more than once, and with several view scales every scale sees it
again. The merge (per scale: cut copies dropped, then non-maximum suppression; then the scales
fused) only ever compares boxes that share some area, so whether a crown is kept, and where its
fused box lies, depends on the boxes around it, not on the whole raster.

That lets a whole orthophoto be merged as it is read, in flat memory. Windows come in blocks of
rows, top to bottom; each block owns the band of the raster from its first row down to the next
block's. A band is merged, with every box within a margin above and below it as context, once
the blocks below have come far enough; it keeps the crowns whose centre lies in it, and boxes
that can no longer be context are let go. In a dense forest the boxes of touching crowns form
chains that cross the whole raster, so waiting for a chain to end would hold everything; the
margin (two windows) is far wider than any one crown's neighbourhood. The same merge serves
detection in one process and on a cluster, where blocks come back in any order and are put
back in reading order first, so both give the same crowns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .boxes import merge_window_detections
from .views import fuse_scales


@dataclass(frozen=True)
class RawCrowns:
    """Crowns as the windows found them, before any merge, in raster pixels.

    ``cut`` marks a box touching a window edge inside the raster (it may be part of a crown);
    ``scale`` is the index of the view scale that found it.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    cut: np.ndarray
    scale: np.ndarray

    @staticmethod
    def empty() -> RawCrowns:
        return RawCrowns(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool),
                         np.zeros(0, dtype=np.int64))

    @staticmethod
    def concatenate(parts: list[RawCrowns]) -> RawCrowns:
        parts = [part for part in parts if len(part)]
        if not parts:
            return RawCrowns.empty()
        return RawCrowns(*(np.concatenate([getattr(p, name) for p in parts]) for name in RawCrowns._fields()))

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("boxes", "scores", "labels", "cut", "scale")

    def subset(self, index: np.ndarray) -> RawCrowns:
        return RawCrowns(*(getattr(self, name)[index] for name in self._fields()))

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class MergedCrowns:
    """One box per crown, in raster pixels, with its score and label id."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @staticmethod
    def empty() -> MergedCrowns:
        return MergedCrowns(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))

    @staticmethod
    def concatenate(parts: list[MergedCrowns]) -> MergedCrowns:
        if not parts:
            return MergedCrowns.empty()
        return MergedCrowns(
            np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.labels for p in parts]).astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.scores)


def merge_crowns(raw: RawCrowns, scale_count: int, nms_threshold: float, score_threshold: float) -> MergedCrowns:
    """The whole merge: each scale's windows merged, then the scales fused (core.views.fuse_scales)."""
    per_scale = []
    for scale in range(scale_count):
        found = raw.subset(np.flatnonzero(raw.scale == scale))
        keep = merge_window_detections(found.boxes, found.scores, found.labels, found.cut, nms_threshold)
        per_scale.append((found.boxes[keep], found.scores[keep], found.labels[keep]))
    boxes, scores, labels = fuse_scales(per_scale, score_threshold)
    return MergedCrowns(np.asarray(boxes, dtype=float).reshape(-1, 4), np.asarray(scores, dtype=float),
                        np.asarray(labels, dtype=np.int64))


class StreamingMerge:
    """The merge of a raster's crowns, fed block by block from top to bottom.

    ``add(raw, top, front)`` takes the crowns of the next block of windows, whose first row is
    ``top`` and whose band ends at ``front`` (the first row of the next block; infinity for the
    last), and returns the crowns now final. ``finish()`` returns the rest.
    """

    def __init__(self, scale_count: int, nms_threshold: float, score_threshold: float, margin: float) -> None:
        self.scale_count = scale_count
        self.nms_threshold = nms_threshold
        self.score_threshold = score_threshold
        self.margin = margin
        self._held = RawCrowns.empty()
        self._bands: list[tuple[float, float]] = []  # bands received and not yet merged, top to bottom
        self._received_to = -math.inf

    @property
    def pending(self) -> int:
        """Boxes held as part of a band still to merge, or as context for one."""
        return len(self._held)

    def add(self, raw: RawCrowns, top: float, front: float) -> MergedCrowns:
        first_band = not self._bands and self._received_to == -math.inf
        self._bands.append((-math.inf if first_band else top, front))
        self._held = RawCrowns.concatenate([self._held, raw])
        self._received_to = front
        final = []
        # A band is ready when no box still to come reaches within the margin below it.
        while self._bands and self._received_to >= self._bands[0][1] + self.margin:
            final.append(self._merge_band(*self._bands.pop(0)))
        return MergedCrowns.concatenate(final)

    def finish(self) -> MergedCrowns:
        final = [self._merge_band(*band) for band in self._bands]
        self._bands, self._held = [], RawCrowns.empty()
        return MergedCrowns.concatenate(final)

    def _merge_band(self, top: float, bottom: float) -> MergedCrowns:
        boxes = self._held.boxes
        context = (boxes[:, 3] > top - self.margin) & (boxes[:, 1] < bottom + self.margin)
        merged = MergedCrowns.empty()
        if context.any():
            merged = merge_crowns(self._held.subset(np.flatnonzero(context)), self.scale_count, self.nms_threshold,
                                  self.score_threshold)
        centre = (merged.boxes[:, 1] + merged.boxes[:, 3]) / 2
        owned = (centre >= top) & (centre < bottom)
        # Boxes ending above the next band's context are needed no more.
        self._held = self._held.subset(np.flatnonzero(boxes[:, 3] > bottom - self.margin))
        return MergedCrowns(merged.boxes[owned], merged.scores[owned], merged.labels[owned])
