"""The labelled plots the bundled model learns from and is measured on, with their sites.

Each data folder in ../shared/data holds ``annotations.csv`` (DeepForest CSV) and ``plots.csv``
(one row per plot: ``image_path,site,width,height,crs,gsd_m,...``). Plots without a CRS (the
NeonTreeEvaluation re-export) carry their pixel size in ``gsd_m``: training reads them at it,
and detection runs on a copy that states it.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from treecrowns.core.annotations import ImageAnnotations, read_deepforest_csv  # noqa: E402
from treecrowns.core.raster import write_georeferenced_copy  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"
LABELLED_FOLDERS = (SHARED_DATA / "neon", SHARED_DATA / "neontree-rf416")
SITE_FOLDS = Path(__file__).resolve().parent / "site_folds.json"
_FLIGHT_YEAR = re.compile(r"_(20\d\d)$")


@dataclass(frozen=True)
class Plot:
    """One labelled plot: its crowns (with the pixel size when the raster has no georeference) and its site."""

    crowns: ImageAnnotations
    site: str

    @property
    def name(self) -> str:
        return Path(self.crowns.image_path).stem

    @property
    def place(self) -> str:
        """The plot without its flight year: both years of a plot share it, and one side of any split."""
        return _FLIGHT_YEAR.sub("", self.name)


def read_plots(folder: Path) -> list[Plot]:
    """The plots of one data folder, in file name order.

    Raises:
        SystemExit: If the folder lacks annotations.csv or plots.csv.
    """
    for needed in ("annotations.csv", "plots.csv"):
        if not (folder / needed).exists():
            raise SystemExit(f"{folder / needed} is missing: the training data lies in ../shared/data beside the checkout")
    with open(folder / "plots.csv", newline="") as handle:
        rows = {Path(row["image_path"]).name: row for row in csv.DictReader(handle)}
    plots = []
    for item in read_deepforest_csv(folder / "annotations.csv"):
        row = rows[Path(item.image_path).name]
        pixel_size = None if row.get("crs") else float(row["gsd_m"])
        plots.append(Plot(replace(item, pixel_size_m=pixel_size), row["site"]))
    return sorted(plots, key=lambda plot: plot.crowns.image_path)


def read_all_plots(folders: tuple[Path, ...] = LABELLED_FOLDERS) -> list[Plot]:
    return [plot for folder in folders for plot in read_plots(folder)]


def site_folds(path: Path = SITE_FOLDS) -> list[list[str]]:
    """The groups of sites held out together, one training per group."""
    return json.loads(path.read_text())["folds"]


def held_out_every(plots: list[Plot], every: int = 5) -> tuple[list[Plot], list[Plot]]:
    """Training and validation plots: every ``every``-th place of each site (in name order) is held out.

    A place is a plot without its flight year, so both years of one plot fall on the same side.
    """
    places: dict[str, list[str]] = {}
    for plot in plots:
        site_places = places.setdefault(plot.site, [])
        if plot.place not in site_places:
            site_places.append(plot.place)
    held = {place for site_places in places.values() for i, place in enumerate(site_places) if i % every == every - 1}
    return [p for p in plots if p.place not in held], [p for p in plots if p.place in held]


def detectable(plot: Plot, scratch: Path) -> Path:
    """A raster of the plot that states its pixel size: the plot itself, or a GeoTIFF copy in ``scratch``."""
    if plot.crowns.pixel_size_m is None:
        return Path(plot.crowns.image_path)
    return write_georeferenced_copy(plot.crowns.image_path, scratch / f"{plot.name}.tif", plot.crowns.pixel_size_m)
