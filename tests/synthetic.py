"""Small seeded synthetic GeoTIFFs (textured ground with bright square crowns at known pixels), and tiles cut from a raster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

UTM_18N = CRS.from_epsg(32618)
ORIGIN = (732000.0, 4713000.0)


def crown_image(width: int, height: int, crowns, seed: int = 0) -> np.ndarray:
    """(3, H, W) uint8: dark noisy ground, each crown ``(col, row, size)`` a bright green square."""
    rng = np.random.default_rng(seed)
    image = rng.integers(20, 60, size=(3, height, width)).astype(np.uint8)
    for col, row, size in crowns:
        image[:, row : row + size, col : col + size] = np.array([90, 200, 80], dtype=np.uint8)[:, None, None]
    return image


def write_raster(
    path: Path,
    width: int,
    height: int,
    crowns=(),
    resolution: float = 0.1,
    crs: CRS | None = UTM_18N,
    dtype: str = "uint8",
    extra_bands: int = 0,
    alpha: np.ndarray | None = None,
    nodata: float | None = None,
    nodata_mask: np.ndarray | None = None,
    transform: Affine | None = None,
    seed: int = 0,
) -> Path:
    """Write a GeoTIFF; uint16 and float rasters hold the same picture scaled up."""
    image = crown_image(width, height, crowns, seed).astype(np.float64)
    if dtype == "uint16":
        image = image * 40 + 500
    elif dtype == "float32":
        image = image / 255.0
    bands = [image[i] for i in range(3)]
    bands += [np.full((height, width), 7.0) for _ in range(extra_bands)]
    if alpha is not None:
        bands.append(alpha.astype(np.float64))
    data = np.stack(bands).astype(dtype)
    if nodata_mask is not None:
        data[:, nodata_mask] = nodata
    if transform is None and crs is not None:
        transform = Affine(resolution, 0, ORIGIN[0], 0, -resolution, ORIGIN[1])
    profile = {"driver": "GTiff", "width": width, "height": height, "count": len(bands), "dtype": dtype}
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if alpha is not None:
            from rasterio.enums import ColorInterp

            interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue] + [ColorInterp.undefined] * extra_bands
            dst.colorinterp = interp + [ColorInterp.alpha]
    return Path(path)


def crown_map_box(crown, resolution: float = 0.1) -> tuple[float, float, float, float]:
    """Map coordinates (xmin, ymin, xmax, ymax) of a crown written by :func:`write_raster`."""
    col, row, size = crown
    x0 = ORIGIN[0] + col * resolution
    y1 = ORIGIN[1] - row * resolution
    return (x0, y1 - size * resolution, x0 + size * resolution, y1)


class BrightSquareDetector:
    """A stand-in for the network that finds the bright squares of :func:`crown_image` exactly.

    It lets tests check tiling, resampling, merging and coordinates independently of
    how well a trained model performs. Boxes are pixel corners of each connected
    bright region in the patch it is given.
    """

    def __init__(self) -> None:
        self.score_thresh = 0.5
        self.nms_thresh = 0.5
        self.calls = 0

    def eval(self):
        return self

    def to(self, *args, **kwargs):
        return self

    def __call__(self, images):
        import torch
        from scipy import ndimage

        self.calls += 1
        outputs = []
        for image in images:
            green = image[1].numpy()
            labelled, count = ndimage.label(green > 0.6)
            boxes = []
            for rows, cols in ndimage.find_objects(labelled):
                boxes.append([cols.start, rows.start, cols.stop, rows.stop])
            boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            outputs.append(
                {"boxes": boxes_t, "scores": torch.full((len(boxes),), 0.9), "labels": torch.zeros(len(boxes), dtype=torch.int64)}
            )
        return outputs


def oracle_model(ground_resolution_m: float = 0.1, patch_size: int = 100):
    """A LoadedModel whose network is :class:`BrightSquareDetector`."""
    from treecrowns.core.checkpoint import LoadedModel, ModelMetadata

    metadata = ModelMetadata(
        architecture={"family": "test-oracle"}, labels=("Tree",), ground_resolution_m=ground_resolution_m, patch_size=patch_size
    )
    return LoadedModel(BrightSquareDetector(), metadata)  # type: ignore[arg-type]


def scene(tmp_path: Path, name: str, seed: int, count: int = 8, size: int = 128):
    """A 10 cm raster ``name``.tif with ``count`` bright square crowns placed at random, as ImageAnnotations in pixels."""
    from treecrowns.core.annotations import ImageAnnotations

    rng = np.random.default_rng(seed)
    crowns = []
    while len(crowns) < count:
        side = int(rng.integers(10, 22))
        col, row = (int(v) for v in rng.integers(0, size - side, 2))
        if all(col + side < c or c + s < col or row + side < r or r + s < row for c, r, s in crowns):
            crowns.append((col, row, side))
    path = write_raster(tmp_path / f"{name}.tif", size, size, crowns, seed=seed)
    boxes = np.array([[c, r, c + s, r + s] for c, r, s in crowns], dtype=float)
    return ImageAnnotations(str(path), boxes, ("Tree",) * len(crowns))


def small_model(labels=("Tree",), finest_level=3):
    """A random compact RetinaNet at 10 cm on 64 px patches: quick to train in tests."""
    from treecrowns.core.checkpoint import ModelMetadata, new_model
    from treecrowns.core.model import lite_architecture

    meta = ModelMetadata(architecture=lite_architecture(finest_level=finest_level), labels=labels,
                         ground_resolution_m=0.1, patch_size=64,
                         provenance={"parent": None})
    return new_model(meta)


def cut_into_tiles(raster: Path, folder: Path, tile_width: int, tile_height: int) -> Path:
    """Cut ``raster`` into GeoTIFF tiles in a new ``folder``, as an orthophoto series comes (the last row and column smaller)."""
    from rasterio.windows import Window

    folder.mkdir()
    with rasterio.open(raster) as src:
        for row in range(0, src.height, tile_height):
            for col in range(0, src.width, tile_width):
                window = Window(col, row, min(tile_width, src.width - col), min(tile_height, src.height - row))
                profile = {**src.profile, "width": window.width, "height": window.height,
                           "transform": src.window_transform(window)}
                with rasterio.open(folder / f"tile_{row:04d}_{col:04d}.tif", "w", **profile) as dst:
                    dst.write(src.read(window=window))
    return folder
