"""Reading orthophotos window by window, as 8-bit RGB at the model's ground resolution.

Pixel values reach the model on a 0-255 scale. The rule that gets them there:

* ``uint8`` bands are used as they are;
* floating-point bands whose valid values all lie in [0, 1] are multiplied by 255;
* every other band (``uint16``, signed integers, other floats) is stretched
  linearly from its 2nd to its 98th percentile onto 0-255 and clipped. The
  percentiles are computed once per raster, from a decimated read of its valid
  pixels, so every window of one raster is scaled the same way.

Pixels that GDAL reports as invalid (nodata value, alpha band, mask band) are
returned as a mask; the detector sees them as black and reports no crown there.
"""

from __future__ import annotations

import math
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window as RioWindow

from .errors import RasterError
from .mosaic import tiles_in, write_mosaic_vrt
from .tiling import Window

# Metres per degree, used to express a geographic CRS's pixel size in metres.
_METRES_PER_DEGREE_LAT = 110_574.0
_METRES_PER_DEGREE_LON_AT_EQUATOR = 111_320.0
_STATS_READ_SIZE = 1024


@dataclass(frozen=True)
class BandScaling:
    """Linear map of each chosen band onto 0-255: ``(value - offset) * gain``."""

    offsets: tuple[float, float, float]
    gains: tuple[float, float, float]

    @staticmethod
    def identity() -> "BandScaling":
        return BandScaling((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


# A raster without georeferencing is placed as QGIS draws it: x = column, y = -row. Crowns
# found on it, and crowns drawn over it, then share one frame.
UNREFERENCED_FRAME = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


@dataclass(frozen=True)
class RasterInfo:
    """What the engine needs to know about a raster, as plain values."""

    path: str
    width: int
    height: int
    band_count: int
    dtype: str
    bands: tuple[int, int, int]
    crs_wkt: str | None
    transform: tuple[float, float, float, float, float, float]
    georeferenced: bool
    ground_resolution_m: tuple[float, float] | None
    scaling: BandScaling

    def pixel_to_map(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of pixel corners (``cols``, ``rows`` may be fractional)."""
        a, b, c, d, e, f = self.transform
        return a * cols + b * rows + c, d * cols + e * rows + f

    def map_to_pixel(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional pixel (column, row) of map coordinates."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        dx, dy = np.asarray(xs, dtype=float) - c, np.asarray(ys, dtype=float) - f
        return (e * dx - b * dy) / det, (-d * dx + a * dy) / det


def _choose_bands(dataset: rasterio.DatasetReader, bands: tuple[int, ...] | None) -> tuple[int, int, int]:
    count = dataset.count
    if bands is not None:
        if len(bands) != 3:
            raise RasterError(f"choose exactly three bands (red, green, blue), got {list(bands)}")
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise RasterError(f"band(s) {bad} do not exist: {dataset.name} has bands 1 to {count}")
        return (bands[0], bands[1], bands[2])
    interp = list(dataset.colorinterp)
    tagged = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(t in interp for t in tagged):
        return tuple(interp.index(t) + 1 for t in tagged)  # type: ignore[return-value]
    colour_bands = [i + 1 for i, ci in enumerate(interp) if ci != ColorInterp.alpha]
    if len(colour_bands) < 3:
        raise RasterError(
            f"{dataset.name} has {len(colour_bands)} colour band(s); tree-crown detection needs an RGB "
            "image with at least three bands (choose bands explicitly to reuse a band)"
        )
    return (colour_bands[0], colour_bands[1], colour_bands[2])


def _ground_resolution(dataset: rasterio.DatasetReader) -> tuple[float, float] | None:
    crs = dataset.crs
    if crs is None:
        return None
    res_x, res_y = abs(dataset.transform.a), abs(dataset.transform.e)
    if crs.is_geographic:
        centre_lat = dataset.transform.f + dataset.transform.e * dataset.height / 2.0
        metres_per_degree_lon = _METRES_PER_DEGREE_LON_AT_EQUATOR * math.cos(math.radians(centre_lat))
        return (res_x * metres_per_degree_lon, res_y * _METRES_PER_DEGREE_LAT)
    _unit, factor = crs.linear_units_factor
    return (res_x * factor, res_y * factor)


def _no_valid_pixels(dataset: rasterio.DatasetReader) -> str:
    nodata = f" (nodata value {dataset.nodata:g})" if dataset.nodata is not None else ""
    return (f"{dataset.name} has no valid pixels: every pixel is nodata{nodata} or masked out; check the raster's "
            "nodata value (Layer Properties > Transparency) or choose another raster")


def _damaged(path: str, exc: Exception, where: str = "") -> RasterError:
    return RasterError(
        f"{path} is damaged or truncated: GDAL could not read its pixels{where} ({exc}); export or download it again"
    )


def _decimated_shape(dataset: rasterio.DatasetReader) -> tuple[int, int]:
    """(rows, columns) of a whole-raster read at most ``_STATS_READ_SIZE`` px on its longer side."""
    scale = min(1.0, _STATS_READ_SIZE / max(dataset.width, dataset.height))
    return (max(1, round(dataset.height * scale)), max(1, round(dataset.width * scale)))


def _check_has_valid_pixels(dataset: rasterio.DatasetReader) -> None:
    """Refuse a raster whose every pixel is nodata, from a decimated read of its mask."""
    try:
        mask = dataset.dataset_mask(out_shape=_decimated_shape(dataset), resampling=Resampling.average)
    except (RasterioError, OSError) as exc:
        raise _damaged(dataset.name, exc) from exc
    if not (mask > 0).any():
        raise RasterError(_no_valid_pixels(dataset))


def _check_north_up(dataset: rasterio.DatasetReader) -> None:
    """Windows and boxes are axis-aligned in pixels: a rotated geotransform would put crowns in the wrong place."""
    transform = dataset.transform
    if transform.b != 0 or transform.d != 0:
        raise RasterError(
            f"{dataset.name} has a rotated geotransform (its rows do not run east-west); detection needs a north-up "
            "raster: warp it first (Raster > Projections > Warp, or gdalwarp)"
        )


def _band_scaling(dataset: rasterio.DatasetReader, bands: tuple[int, int, int]) -> BandScaling:
    if all(dataset.dtypes[b - 1] == "uint8" for b in bands):
        return BandScaling.identity()
    shape = _decimated_shape(dataset)
    try:
        data = dataset.read(list(bands), out_shape=(3, *shape), resampling=Resampling.nearest).astype(np.float64)
        valid = dataset.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
    except (RasterioError, OSError) as exc:
        raise _damaged(dataset.name, exc) from exc
    values = data[:, valid]
    if values.size == 0:
        raise RasterError(_no_valid_pixels(dataset))
    is_float = all(np.dtype(dataset.dtypes[b - 1]).kind == "f" for b in bands)
    if is_float and values.min() >= 0.0 and values.max() <= 1.0:
        return BandScaling((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
    low = np.percentile(values, 2, axis=1)
    high = np.percentile(values, 98, axis=1)
    gains = 255.0 / np.maximum(high - low, 1e-9)
    return BandScaling(tuple(float(v) for v in low), tuple(float(v) for v in gains))  # type: ignore[arg-type]


class _BlockCacheLimit:
    """GDAL's block cache held to what reading one raster window by window needs, while a reader is open.

    GDAL keeps every block it decodes until its cache (5 % of the machine's memory by default, 1.2 GB
    on 24 GB) is full, so a run over a whole orthophoto would grow by that much. Windows are read in
    rows, so two rows of blocks across the raster are all that is read again. The cache is
    process-wide (QGIS shares it): the smaller limit holds while any reader is open, then the
    previous one comes back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, int] = {}  # reader id -> bytes it needs
        self._before: int | None = None

    def hold(self, reader_id: int, needed_bytes: int) -> None:
        from osgeo import gdal  # the same GDAL library as rasterio's

        with self._lock:
            if self._before is None:
                self._before = gdal.GetCacheMax()
            self._open[reader_id] = needed_bytes
            gdal.SetCacheMax(min(self._before, max(self._open.values())))

    def release(self, reader_id: int) -> None:
        from osgeo import gdal

        with self._lock:
            if self._open.pop(reader_id, None) is None or self._before is None:
                return
            gdal.SetCacheMax(min(self._before, max(self._open.values())) if self._open else self._before)
            if not self._open:
                self._before = None


_BLOCK_CACHE = _BlockCacheLimit()
_MIN_BLOCK_CACHE_BYTES = 32 * 2**20
# Rows of the raster whose blocks stay cached: a row of windows (400 rows at 10 cm for the bundled
# model) spans at most two rows of 512-row blocks, and the next row of windows reuses them.
_CACHED_ROWS = 1024


def block_cache_bytes(dataset: rasterio.DatasetReader) -> int:
    """Two rows of blocks (at least 1,024 rows) across the raster, at least 32 MB: what rows of windows read again."""
    rows = max(2 * dataset.block_shapes[0][0], _CACHED_ROWS)
    item_size = np.dtype(dataset.dtypes[0]).itemsize
    return max(_MIN_BLOCK_CACHE_BYTES, rows * dataset.width * dataset.count * item_size)


class RasterReader:
    """An open raster that hands out scaled, resampled RGB windows.

    Use as a context manager; nothing is read until :meth:`read` is called.
    """

    def __init__(self, path: str | Path, bands: tuple[int, ...] | None = None) -> None:
        path = str(path)
        if not Path(path).exists() and "://" not in path and not path.startswith("/vsi"):
            raise RasterError(f"raster not found: {path}; check the path or choose another layer")
        self._mosaic_folder: tempfile.TemporaryDirectory | None = None
        opened = path
        if Path(path).is_dir():
            # A folder of tiles is read as one mosaic (core.mosaic), described by a VRT of our own.
            self._mosaic_folder = tempfile.TemporaryDirectory(prefix="treecrowns-mosaic-")
            opened = str(write_mosaic_vrt(tiles_in(path), Path(self._mosaic_folder.name) / "mosaic.vrt"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._dataset = rasterio.open(opened)
        except (RasterioError, OSError) as exc:
            if self._mosaic_folder is not None:
                self._mosaic_folder.cleanup()
            raise RasterError(f"cannot read {path} as a raster ({exc}); is it a GeoTIFF or other GDAL image?") from exc
        _BLOCK_CACHE.hold(id(self), block_cache_bytes(self._dataset))
        try:
            _check_north_up(self._dataset)
            chosen = _choose_bands(self._dataset, bands)
            _check_has_valid_pixels(self._dataset)
            georeferenced = self._dataset.crs is not None or not self._dataset.transform.is_identity
            t = self._dataset.transform if georeferenced else UNREFERENCED_FRAME
            self.info = RasterInfo(
                path=path,
                width=self._dataset.width,
                height=self._dataset.height,
                band_count=self._dataset.count,
                dtype=self._dataset.dtypes[chosen[0] - 1],
                bands=chosen,
                crs_wkt=self._dataset.crs.to_wkt() if self._dataset.crs else None,
                transform=(t.a, t.b, t.c, t.d, t.e, t.f),
                georeferenced=georeferenced,
                ground_resolution_m=_ground_resolution(self._dataset),
                scaling=_band_scaling(self._dataset, chosen),
            )
        except Exception:
            self.close()
            raise

    def __enter__(self) -> "RasterReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._dataset.close()
        _BLOCK_CACHE.release(id(self))
        if self._mosaic_folder is not None:
            self._mosaic_folder.cleanup()
            self._mosaic_folder = None

    def read(self, window: Window, out_width: int, out_height: int) -> tuple[np.ndarray, np.ndarray]:
        """One window, resampled to ``out_width`` x ``out_height``.

        Returns:
            ``(image, valid)``: a float32 array of shape (3, H, W) on the 0-255 scale with
            invalid pixels set to 0, and a boolean (H, W) array that is True where the
            raster has data.

        Raises:
            RasterError: If GDAL cannot read the window.
        """
        rio_window = RioWindow(window.col_off, window.row_off, window.width, window.height)
        resampling = Resampling.nearest if (out_width, out_height) == (window.width, window.height) else Resampling.bilinear
        try:
            data = self._dataset.read(
                list(self.info.bands), window=rio_window, out_shape=(3, out_height, out_width), resampling=resampling
            )
            valid = self._dataset.dataset_mask(
                window=rio_window, out_shape=(out_height, out_width), resampling=Resampling.nearest
            ) > 0
        except (RasterioError, OSError) as exc:
            raise _damaged(self.info.path, exc, f" from column {window.col_off}, row {window.row_off}") from exc
        image = data.astype(np.float32)
        scaling = self.info.scaling
        if scaling != BandScaling.identity():
            offsets = np.asarray(scaling.offsets, dtype=np.float32)[:, None, None]
            gains = np.asarray(scaling.gains, dtype=np.float32)[:, None, None]
            image = np.clip((image - offsets) * gains, 0.0, 255.0)
        image[:, ~valid] = 0.0
        return image, valid


def read_full(path: str | Path, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, RasterInfo]:
    """A whole (small) raster, resized by ``scale``; used for training plots and previews."""
    with RasterReader(path) as reader:
        info = reader.info
        out_w = max(1, round(info.width * scale))
        out_h = max(1, round(info.height * scale))
        image, valid = reader.read(Window(0, 0, info.width, info.height), out_w, out_h)
    return image, valid, info


def write_georeferenced_copy(
    source: str | Path, target: str | Path, pixel_size_m: float, crs: str = "EPSG:32611",
    origin: tuple[float, float] = (300000.0, 4100000.0),
) -> Path:
    """Copy the first three bands of an image without georeference into a GeoTIFF that states its pixel size.

    The engine takes a raster without georeference to be at the model's resolution; a copy
    placed at ``origin`` (an arbitrary spot) in a metric CRS tells it the real pixel size.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(source) as image:
            pixels = image.read([1, 2, 3])
    transform = Affine(pixel_size_m, 0.0, origin[0], 0.0, -pixel_size_m, origin[1])
    profile = {"driver": "GTiff", "width": pixels.shape[2], "height": pixels.shape[1], "count": 3, "dtype": pixels.dtype,
               "crs": crs, "transform": transform, "compress": "deflate", "photometric": "RGB"}
    with rasterio.open(target, "w", **profile) as copy:
        copy.write(pixels)
    return Path(target)
