"""The grid of overlapping windows that detection slides over a raster."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TreecrownsError


@dataclass(frozen=True)
class Window:
    """A rectangle of raster pixels: column/row offset of its top-left corner and size."""

    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    @property
    def row_end(self) -> int:
        return self.row_off + self.height


def _offsets(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets along one axis; the last window is pushed back to end on the border."""
    if size <= patch:
        return [0]
    offsets = list(range(0, size - patch, stride))
    offsets.append(size - patch)
    return offsets


def window_grid(
    width: int, height: int, patch_size: int, overlap: float, patch_height: int | None = None
) -> list[Window]:
    """Windows of ``patch_size`` pixels that cover the whole raster, row by row.

    Neighbouring windows share at least ``overlap`` (a fraction of the patch) so that
    every crown smaller than the overlap lies whole inside some window. Windows are
    clipped to the raster, so a raster smaller than a patch gives one smaller window.

    Args:
        width: Raster width in pixels.
        height: Raster height in pixels.
        patch_size: Window width (and height, unless ``patch_height`` is given) in pixels.
        overlap: Fraction of a window shared with its neighbour, in [0, 0.9].
        patch_height: Window height in pixels, for rasters whose pixels are not square.

    Returns:
        The windows, ordered by row then column.

    Raises:
        TreecrownsError: If a size is not positive or the overlap is out of range.
    """
    if width < 1 or height < 1:
        raise TreecrownsError(f"raster size must be positive, got {width} x {height} pixels")
    patch_height = patch_size if patch_height is None else patch_height
    if min(patch_size, patch_height) < 8:
        raise TreecrownsError(f"patch size must be at least 8 pixels, got {patch_size} x {patch_height}")
    if not 0.0 <= overlap <= 0.9:
        raise TreecrownsError(f"overlap must be a fraction between 0 and 0.9, got {overlap}")
    col_stride = max(1, int(patch_size * (1.0 - overlap)))
    row_stride = max(1, int(patch_height * (1.0 - overlap)))
    return [
        Window(col, row, min(patch_size, width - col), min(patch_height, height - row))
        for row in _offsets(height, patch_height, row_stride)
        for col in _offsets(width, patch_size, col_stride)
    ]
