"""A folder of orthophoto tiles read as one raster, through a GDAL virtual mosaic (VRT).

National orthophoto series come as thousands of tiles. Detected tile by tile, a crown on a tile
border would come out twice, or cut in two. Read as one mosaic, windows cross tile borders like
any other pixels and the crowns merge as on a single raster. The VRT is a small XML file that
points at the tiles; no pixel is copied.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from .errors import RasterError

TILE_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".vrt")
# Tiles must sit on one pixel grid: an offset within this share of a pixel is taken as exact.
_GRID_TOLERANCE = 0.01


@dataclass(frozen=True)
class _Tile:
    path: Path
    width: int
    height: int
    left: float
    top: float


def tiles_in(folder: str | Path) -> list[Path]:
    """The raster tiles directly inside ``folder``, in name order.

    Raises:
        RasterError: If the folder holds none.
    """
    folder = Path(folder)
    tiles = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TILE_SUFFIXES)
    if not tiles:
        raise RasterError(f"{folder} holds no raster tiles ({', '.join(TILE_SUFFIXES)}); choose a raster or a folder of tiles")
    return tiles


def write_mosaic_vrt(tiles: list[Path], target: str | Path) -> Path:
    """Write a VRT that shows ``tiles`` as one raster: the union of their extents, gaps as nodata.

    All tiles must share a CRS, a pixel size, a pixel grid, their band count and data type, and be
    north-up, as the tiles of one orthophoto series do.

    Raises:
        RasterError: Naming the first tile that does not fit, and how to make it fit.
    """
    first, reference = None, None
    placed: list[_Tile] = []
    for path in tiles:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as tile:
                    profile = (tile.crs, tile.count, tile.dtypes, tile.nodata)
                    transform, width, height = tile.transform, tile.width, tile.height
                    colours = [c.name for c in tile.colorinterp]
        except (RasterioError, OSError) as exc:
            raise RasterError(f"tile {path} cannot be read ({exc}); remove it from the folder or repair it") from exc
        if tile_has_no_place(transform, profile[0]):
            raise RasterError(f"tile {path} is not georeferenced (or is rotated): tiles are placed by their georeference")
        if first is None:
            first, reference = path, (profile, transform.a, transform.e, colours)
        elif (profile[:3], transform.a, transform.e) != (reference[0][:3], reference[1], reference[2]):
            raise RasterError(
                f"tile {path} does not match {first.name} (CRS, band count, data type or pixel size differ); "
                "warp the tiles to one grid first (gdalwarp), or detect on them one by one"
            )
        placed.append(_Tile(path, width, height, transform.c, transform.f))
    assert reference is not None
    (crs, count, dtypes, nodata), res_x, res_y, colours = reference
    left = min(t.left for t in placed)
    top = max(t.top for t in placed)  # res_y < 0: the top edge has the largest y
    right = max(t.left + t.width * res_x for t in placed)
    bottom = min(t.top + t.height * res_y for t in placed)
    width, height = round((right - left) / res_x), round((bottom - top) / res_y)
    bands = []
    for band in range(1, count + 1):
        sources = []
        for tile in placed:
            col, row = (tile.left - left) / res_x, (tile.top - top) / res_y
            if abs(col - round(col)) > _GRID_TOLERANCE or abs(row - round(row)) > _GRID_TOLERANCE:
                raise RasterError(
                    f"tile {tile.path} is off the pixel grid of {first.name} by a fraction of a pixel; "
                    "warp the tiles to one grid first (gdalwarp -tap)"
                )
            sources.append(
                f'    <SimpleSource><SourceFilename relativeToVRT="0">{escape(str(tile.path.resolve()))}</SourceFilename>'
                f"<SourceBand>{band}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{tile.width}" ySize="{tile.height}"/>'
                f'<DstRect xOff="{round(col)}" yOff="{round(row)}" xSize="{tile.width}" ySize="{tile.height}"/></SimpleSource>'
            )
        # Gaps between tiles read as the tiles' nodata, or black when they state none (a nodata value of 0
        # would also blank every real pixel with a 0 in one band).
        gap = f"<NoDataValue>{nodata!r}</NoDataValue>" if nodata is not None and not math.isnan(nodata) else ""
        colour = f"<ColorInterp>{colours[band - 1].capitalize()}</ColorInterp>" if colours[band - 1] != "undefined" else ""
        bands.append(
            f'  <VRTRasterBand dataType="{_GDAL_TYPES[dtypes[band - 1]]}" band="{band}">{colour}{gap}\n'
            + "\n".join(sources) + "\n  </VRTRasterBand>"
        )
    srs = f"  <SRS>{escape(crs.to_wkt())}</SRS>\n" if crs is not None else ""
    text = (
        f'<VRTDataset rasterXSize={quoteattr(str(width))} rasterYSize={quoteattr(str(height))}>\n{srs}'
        f"  <GeoTransform>{left!r}, {res_x!r}, 0.0, {top!r}, 0.0, {res_y!r}</GeoTransform>\n"
        + "\n".join(bands) + "\n</VRTDataset>\n"
    )
    Path(target).write_text(text)
    return Path(target)


def tile_has_no_place(transform, crs) -> bool:
    return crs is None or transform.b != 0 or transform.d != 0 or transform.is_identity


_GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
    "float32": "Float32", "float64": "Float64",
}
