"""The public sample plots: real NEON imagery with hand-drawn crowns, from the deepforest wheel.

The ``deepforest`` package (MIT licence) ships a few plots with Pascal VOC crowns in its wheel.
``scripts/setup.sh`` fetches that wheel by pinned hash and unpacks only ``deepforest/data/`` into
``build/samples/``; deepforest itself is never installed or imported. The bundled model never
trains or tunes on these plots: they show a new user what it finds, and they are test imagery
for a clone that has nothing beside it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from rasterio.windows import Window

from .annotations import ImageAnnotations, read_pascal_voc
from .errors import TreecrownsError
from .raster import write_georeferenced_copy

# Overrides where the unpacked ``deepforest/data/`` folder is looked for.
SAMPLES_FOLDER_VARIABLE = "TREECROWNS_SAMPLES"
DEFAULT_SAMPLES_FOLDER = Path(__file__).resolve().parents[1] / "build" / "samples" / "deepforest" / "data"

# The plots with crowns: a georeferenced 10 cm GeoTIFF, then three PNGs without georeference.
GEOREFERENCED_PLOT = "OSBS_029"
SAMPLE_PLOTS = (
    GEOREFERENCED_PLOT,
    "SOAP_061",
    "2019_YELL_2_541000_4977000_image_crop",
    "2019_YELL_2_528000_4978000_image_crop2",
)
# NEON's airborne RGB, which all of them are, has 10 cm pixels.
SAMPLE_RESOLUTION_M = 0.1


class SampleDataMissingError(TreecrownsError, FileNotFoundError):
    """The sample plots have not been unpacked (scripts/setup.sh does it)."""


@dataclass(frozen=True)
class SamplePlot:
    """One sample plot: its image and the crowns drawn on it, in pixel corners."""

    name: str
    crowns: ImageAnnotations

    @property
    def image(self) -> Path:
        return Path(self.crowns.image_path)


def samples_folder() -> Path:
    """The unpacked ``deepforest/data/`` folder (``$TREECROWNS_SAMPLES`` when set)."""
    return Path(os.environ.get(SAMPLES_FOLDER_VARIABLE) or DEFAULT_SAMPLES_FOLDER)


def sample_plot(name: str) -> SamplePlot:
    """One of ``SAMPLE_PLOTS`` with its hand-drawn crowns.

    Raises:
        SampleDataMissingError: If the plots have not been unpacked yet.
        ValueError: If ``name`` is not a sample plot.
    """
    if name not in SAMPLE_PLOTS:
        raise ValueError(f"{name!r} is not a sample plot; choose one of {list(SAMPLE_PLOTS)}")
    folder = samples_folder()
    xml = folder / f"{name}.xml"
    if not xml.exists():
        raise SampleDataMissingError(
            f"sample plot {name} not found in {folder}: run scripts/setup.sh, which unpacks the deepforest "
            f"2.1.0 wheel's sample data there (or set {SAMPLES_FOLDER_VARIABLE} to such a folder)"
        )
    crowns = read_pascal_voc(xml)
    if not Path(crowns.image_path).exists():
        raise SampleDataMissingError(f"{xml} names the image {crowns.image_path}, which is missing: rerun scripts/setup.sh")
    return SamplePlot(name, crowns)


def sample_plots() -> list[SamplePlot]:
    """Every sample plot with crowns, in ``SAMPLE_PLOTS`` order."""
    return [sample_plot(name) for name in SAMPLE_PLOTS]


def georeferenced_copy(plot: SamplePlot, path: Path, crs: str = "EPSG:32611",
                       origin: tuple[float, float] = (300000.0, 4100000.0)) -> SamplePlot:
    """The plot as a 10 cm GeoTIFF with its top-left corner at ``origin``, with the same crowns.

    The PNG samples carry no georeference, so the engine would take them to be at the model's
    own resolution; a copy that states their 10 cm is what a user who georeferenced them would
    detect on. The position is arbitrary: only the pixel size matters to the detector.
    """
    write_georeferenced_copy(plot.image, path, SAMPLE_RESOLUTION_M, crs, origin)
    return SamplePlot(plot.name, replace(plot.crowns, image_path=str(path)))


# The plot that large test orthophotos are made of: open conifers, 10 cm, no seams when mirrored.
ORTHOPHOTO_SOURCE_PLOT = "2019_YELL_2_528000_4978000_image_crop2"


def mirrored_block(source: np.ndarray, row: int, col: int, height: int, width: int) -> np.ndarray:
    """The pixels [row:row+height, col:col+width] of ``source`` repeated in mirror image across the plane."""
    src_h, src_w = source.shape[1:]
    rows = np.arange(row, row + height) % (2 * src_h)
    cols = np.arange(col, col + width) % (2 * src_w)
    rows = np.where(rows < src_h, rows, 2 * src_h - 1 - rows)
    cols = np.where(cols < src_w, cols, 2 * src_w - 1 - cols)
    return source[:, rows][:, :, cols]


def write_mirrored_orthophoto(size: int, target: str | Path, block: int = 2048) -> Path:
    """A size x size px, 10 cm tiled GeoTIFF of a sample plot mirrored across it, for tests and benchmarks.

    Written block by block, so a 40,000 px raster takes little memory to build (about 3 GB on disk).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG: its place is set below
        with rasterio.open(sample_plot(ORTHOPHOTO_SOURCE_PLOT).image) as src:
            source = src.read([1, 2, 3])
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "crs": "EPSG:32612",
               "transform": from_origin(528000, 4978000, SAMPLE_RESOLUTION_M, SAMPLE_RESOLUTION_M), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate", "photometric": "RGB", "BIGTIFF": "IF_SAFER"}
    with rasterio.open(target, "w", **profile) as dst:
        for row in range(0, size, block):
            for col in range(0, size, block):
                height, width = min(block, size - row), min(block, size - col)
                dst.write(mirrored_block(source, row, col, height, width), window=Window(col, row, width, height))
    return Path(target)
