"""The band-by-band merge gives the crowns of the whole-raster merge in flat memory, whatever the bands."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treecrowns.core.crown_merge import MergedCrowns, RawCrowns, StreamingMerge, merge_crowns
from treecrowns.core.tiling import window_grid

RASTER = 1200


def crowns_seen_by_windows(seed: int, scales: int, window: int = 100, overlap: float = 0.3) -> tuple[list, list]:
    """Random crowns as overlapping windows would report them: every window sees, at every scale,
    the crowns inside it (clipped, slightly moved, cut where the window cuts them).

    Returns the windows' row offsets and their RawCrowns, in reading order.
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, RASTER, size=(900, 2))
    radii = rng.uniform(4, 30, size=900)
    truth = np.column_stack([centres - radii[:, None], centres + radii[:, None]]).clip(0, RASTER)
    rows, found = [], []
    for w in window_grid(RASTER, RASTER, window, overlap):
        for scale in range(scales):
            x0, y0, x1, y1 = (truth[:, k] for k in range(4))
            inside = (x1 > w.col_off) & (x0 < w.col_end) & (y1 > w.row_off) & (y0 < w.row_end)
            boxes = truth[inside] + rng.normal(0, 1.5, size=(int(inside.sum()), 4))
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(w.col_off, w.col_end)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(w.row_off, w.row_end)
            boxes = boxes[(boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)]
            n = len(boxes)
            cut = (boxes[:, 0] <= w.col_off + 1) & (w.col_off > 0) | (boxes[:, 3] >= w.row_end - 1) & (w.row_end < RASTER)
            rows.append(w.row_off)
            found.append(RawCrowns(boxes, rng.uniform(0.05, 1, n), rng.integers(0, 2, n), cut, np.full(n, scale)))
    return rows, found


def as_set(crowns: MergedCrowns) -> list:
    return sorted(
        (*(round(float(v), 9) for v in box), round(float(s), 9), int(label))
        for box, s, label in zip(crowns.boxes, crowns.scores, crowns.labels)
    )


def streamed(rows: list, found: list, strips: list[int], scales: int, window: int) -> tuple[MergedCrowns, int]:
    """Feed the windows' crowns in blocks that end after the given window indices."""
    merge = StreamingMerge(scales, nms_threshold=0.4, score_threshold=0.3, margin=2 * window)
    parts, most_pending, start = [], 0, 0
    for end in [*strips, len(found)]:
        if end <= start:
            continue
        front = rows[end] if end < len(rows) else np.inf
        # A strip ends with a whole row of windows, as detection's blocks do.
        while end < len(rows) and rows[end] == rows[end - 1]:
            end += 1
            front = rows[end] if end < len(rows) else np.inf
        parts.append(merge.add(RawCrowns.concatenate(found[start:end]), rows[start], front))
        most_pending = max(most_pending, merge.pending)
        start = end
    parts.append(merge.finish())
    return MergedCrowns.concatenate(parts), most_pending


@pytest.mark.parametrize("scales", [1, 2])
def test_merging_row_by_row_gives_the_whole_raster_merge(scales):
    rows, found = crowns_seen_by_windows(seed=3, scales=scales)
    whole = merge_crowns(RawCrowns.concatenate(found), scales, nms_threshold=0.4, score_threshold=0.3)
    by_row = [i for i in range(1, len(rows)) if rows[i] != rows[i - 1]]
    result, most_pending = streamed(rows, found, by_row, scales, window=100)
    assert len(whole) > 100
    assert as_set(result) == as_set(whole)
    # Memory: what waits is a few rows of windows' worth, not the raster's.
    assert most_pending < len(RawCrowns.concatenate(found)) / 2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 200), max_size=6))
def test_any_strips_give_the_same_crowns(seed, cuts):
    rows, found = crowns_seen_by_windows(seed, scales=2, window=150)
    whole = merge_crowns(RawCrowns.concatenate(found), 2, nms_threshold=0.4, score_threshold=0.3)
    result, _ = streamed(rows, found, sorted(c % len(found) for c in cuts), scales=2, window=150)
    assert as_set(result) == as_set(whole)
