from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from treecrowns.core.errors import TreecrownsError
from treecrowns.core.tiling import window_grid


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 2500),
    height=st.integers(1, 2500),
    patch=st.integers(16, 600),
    overlap=st.floats(0.0, 0.9),
)
def test_grid_covers_every_pixel_with_windows_inside_the_raster(width, height, patch, overlap):
    windows = window_grid(width, height, patch, overlap)
    cols = sorted({w.col_off for w in windows})
    rows = sorted({w.row_off for w in windows})
    for w in windows:
        assert 0 <= w.col_off and w.col_end <= width and 0 <= w.row_off and w.row_end <= height
        assert w.width == min(patch, width) and w.height == min(patch, height)
    # Consecutive windows touch or overlap, and the last one reaches the far border.
    assert cols[0] == 0 and rows[0] == 0
    assert max(w.col_end for w in windows) == width and max(w.row_end for w in windows) == height
    for offsets, size in ((cols, width), (rows, height)):
        for a, b in zip(offsets, offsets[1:]):
            assert b - a <= patch - int(patch * overlap) or b == size - patch
            assert b > a
    # Neighbours share at least the requested overlap (or as much as a one-pixel step allows).
    if len(cols) > 1:
        assert min(b - a for a, b in zip(cols, cols[1:])) <= max(1, patch - patch * overlap + 1e-9)
    assert len(windows) == len(cols) * len(rows)


def test_raster_smaller_than_a_patch_gives_one_window():
    [window] = window_grid(83, 150, 200, 0.1)
    assert (window.col_off, window.row_off, window.width, window.height) == (0, 0, 83, 150)


@pytest.mark.parametrize("args", [(0, 10, 100, 0.1), (100, 100, 4, 0.1), (100, 100, 50, 0.95), (100, 100, 50, -0.1)])
def test_bad_grid_arguments_are_refused_with_a_message(args):
    with pytest.raises(TreecrownsError, match="must"):
        window_grid(*args)
