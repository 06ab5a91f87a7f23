"""Copies of the colour-equalised NeonTreeEvaluation export in the colours of raw NEON imagery.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/raw_look_copies.py --target output/raw-look/fold-1 --reference-without HARV

Users detect on raw NEON-like orthophotos, but 14 of the 18 labelled sites come only from an
export whose contrast was equalised plot by plot (the statistics of its plots match scikit-image's
adaptive equalisation of the brightness, clip 0.03: every channel near-uniform on 0-255). This
writes a data folder with the same plots, crowns and ``plots.csv`` as
``../shared/data/neontree-rf416``, each image's brightness mapped so that its histogram follows
that of raw NEON plots (hue and saturation kept): the pooled histogram of the labelled plots in
``../shared/data/neon``, without the sites ``--reference-without`` names (a fold's held-out sites
lend nothing). Train
with ``--data neon,<target>`` instead of ``neon,neontree-rf416``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plots import LABELLED_FOLDERS, read_plots  # noqa: E402

RAW, EQUALISED = LABELLED_FOLDERS
LEVELS = np.arange(256)


def raw_histogram(sites_left_out: list[str]) -> np.ndarray:
    """Pixel counts per level of brightness, pooled over the raw plots outside ``sites_left_out``."""
    counts = np.zeros(256)
    for plot in read_plots(RAW):
        if plot.site in sites_left_out:
            continue
        with rasterio.open(plot.crowns.image_path) as source:
            counts += np.bincount(source.read([1, 2, 3]).max(axis=0).ravel(), minlength=256)
    if not counts.any():
        raise SystemExit("no raw plot is left to take colours from: leave out fewer sites")
    return counts


def quantile_levels(counts: np.ndarray) -> np.ndarray:
    """Each grey level's share of pixels at or below it (the cumulative distribution)."""
    cumulative = np.cumsum(counts)
    return cumulative / cumulative[-1]


def matched(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``image`` (3, H, W, uint8) with its brightness histogram moved onto the reference's, hue and saturation kept.

    Brightness is the largest of red, green and blue (HSV's value), the quantity the export
    equalised; scaling all three channels by the same factor leaves hue and saturation as they were.
    """
    brightness = image.max(axis=0)
    own = quantile_levels(np.bincount(brightness.ravel(), minlength=256))
    mapping = np.interp(own, quantile_levels(reference), LEVELS)
    gain = mapping[brightness] / np.maximum(brightness, 1)
    return np.clip(np.rint(image * gain[None]), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, required=True, help="the new data folder")
    parser.add_argument("--reference-without", default="", help="comma-separated raw sites whose colours are not used")
    args = parser.parse_args()
    reference = raw_histogram([s for s in args.reference_without.split(",") if s])
    (args.target / "images").mkdir(parents=True, exist_ok=True)
    for name in ("annotations.csv", "plots.csv"):
        shutil.copyfile(EQUALISED / name, args.target / name)
    plots = read_plots(EQUALISED)
    for plot in plots:
        with rasterio.open(plot.crowns.image_path) as source:
            image, profile = source.read(), source.profile
        with rasterio.open(args.target / "images" / Path(plot.crowns.image_path).name, "w", **profile) as target:
            target.write(matched(image, reference))
    print(f"{len(plots)} plots in raw NEON colours written to {args.target}")


if __name__ == "__main__":
    main()
