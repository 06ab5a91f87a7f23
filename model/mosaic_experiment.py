"""How a checkpoint does on a large orthophoto, next to the same plots detected one at a time.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/mosaic_experiment.py [--sites HARV,OSBS,SJER,TEAK]
        [--folder output/leave-one-site-out] [--overlaps 0,0.15] [--view-scales 1]

A validation plot is 40 m across, one patch at the model's 0.2 m, so scoring plots never
exercises what detection does on a larger raster: windows that cut crowns, crowns seen by
two windows and merged, several scales fused. Here each site's 400 x 400 px plots are tiled in
name order into one GeoTIFF, and the checkpoint trained without that site
(``without-SITE.safetensors`` in ``--folder``, from model/leave_one_site_out.py) detects on it
at each overlap. The crowns whose centre falls in a plot are scored against that plot's
reference crowns (DeepForest's protocol), next to the plots detected one at a time.

The seams between unrelated plots cost a little by themselves: at overlap 0 every window of
scale 1 lies exactly on one plot, which measures that cost. ``--view-scales`` replaces the
checkpoint's scales (for instance ``1`` to compare with one scale); the threshold stays the
checkpoint's.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from treecrowns.core.annotations import ImageAnnotations, read_deepforest_csv  # noqa: E402
from treecrowns.core.checkpoint import LoadedModel, load_checkpoint  # noqa: E402
from treecrowns.core.evaluation import evaluate  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, detect  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "neon"
PLOT_PX = 400
# Below the calibrated thresholds, so that a threshold sweep can be read off one detection.
FLOOR = 0.05
SWEEP = (0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3)

Found = dict[str, tuple[np.ndarray, np.ndarray]]  # plot path -> (boxes in plot pixels, scores)



def write_mosaic(canvas: np.ndarray, target: Path) -> Path:
    """A (3, rows, cols) uint8 canvas of NEON plots as a tiled 10 cm GeoTIFF (an arbitrary UTM origin)."""
    profile = {"driver": "GTiff", "width": canvas.shape[2], "height": canvas.shape[1], "count": 3, "dtype": "uint8",
               "crs": "EPSG:32618", "transform": from_origin(730000, 4700000, 0.1, 0.1), "tiled": True}
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(canvas)
    return target

def plot_shape(path: str) -> tuple[int, int]:
    """Rows and columns of a plot image, read from its header."""
    with rasterio.open(path) as src:
        return src.shape


def site_mosaic(plots: list[ImageAnnotations], target: Path) -> dict[str, tuple[int, int]]:
    """Tile the plots into a square GeoTIFF at ``target``; returns each plot's top-left (column, row)."""
    side = math.ceil(math.sqrt(len(plots)))
    canvas = np.zeros((3, side * PLOT_PX, side * PLOT_PX), dtype=np.uint8)
    corners = {}
    for k, plot in enumerate(plots):
        col, row = (k % side) * PLOT_PX, (k // side) * PLOT_PX
        with rasterio.open(plot.image_path) as src:
            canvas[:, row : row + PLOT_PX, col : col + PLOT_PX] = src.read([1, 2, 3])
        corners[plot.image_path] = (col, row)
    write_mosaic(canvas, target)
    return corners


def split_by_plot(boxes: np.ndarray, scores: np.ndarray, corners: dict[str, tuple[int, int]]) -> Found:
    """The mosaic's crowns handed to the plot their centre falls in, in that plot's pixels."""
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    found = {}
    for path, (col, row) in corners.items():
        inside = (centre_x >= col) & (centre_x < col + PLOT_PX) & (centre_y >= row) & (centre_y < row + PLOT_PX)
        found[path] = ((boxes[inside] - [col, row, col, row]).clip(0, PLOT_PX), scores[inside])
    return found


def scored(found: Found, reference: dict[str, np.ndarray], threshold: float):
    """DeepForest's protocol over the plots, for the crowns scoring ``threshold`` or more."""
    return evaluate({path: boxes[scores >= threshold] for path, (boxes, scores) in found.items()}, reference)


def summary(found: Found, reference: dict[str, np.ndarray], threshold: float) -> str:
    """P, R, F1 and crowns kept at ``threshold``, then the best threshold of the sweep."""
    at = scored(found, reference, threshold)
    kept = sum(int((scores >= threshold).sum()) for _, scores in found.values())
    f1_at = {t: scored(found, reference, t).f1 for t in SWEEP}
    best = max(SWEEP, key=f1_at.__getitem__)
    return (f"P {at.precision:.3f}  R {at.recall:.3f}  F1 {at.f1:.3f}  crowns {kept:5d}   "
            f"(best in sweep: {best:g} -> F1 {f1_at[best]:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="HARV,OSBS,SJER,TEAK")
    parser.add_argument("--folder", type=Path, default=REPO / "output" / "leave-one-site-out")
    parser.add_argument("--overlaps", default="0,0.15", help="window overlaps to detect the mosaic at")
    parser.add_argument("--view-scales", help="replace the checkpoint's view scales, e.g. 1")
    args = parser.parse_args()
    overlaps = [float(v) for v in args.overlaps.split(",")]
    items = read_deepforest_csv(DATA / "annotations.csv")
    f1_by_row: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for site in args.sites.split(","):
            plots = sorted((it for it in items if Path(it.image_path).name.startswith(site + "_")), key=lambda it: it.image_path)
            plots = [it for it in plots if plot_shape(it.image_path) == (PLOT_PX, PLOT_PX)]
            path = args.folder / f"without-{site}.safetensors"
            if not path.exists():
                raise SystemExit(f"{path} is missing: train it with model/leave_one_site_out.py --train --sites {site}")
            model: LoadedModel = load_checkpoint(path)
            if args.view_scales:
                scales = tuple(float(v) for v in args.view_scales.split(","))
                model = replace(model, metadata=replace(model.metadata, view_scales=scales))
            threshold = model.metadata.score_threshold
            settings = DetectionSettings(score_threshold=FLOOR)
            reference = {it.image_path: it.boxes for it in plots}
            rows: dict[str, Found] = {}
            alone = {}
            for plot in plots:
                found = detect(plot.image_path, model, settings)
                alone[plot.image_path] = (found.pixel_boxes, found.scores)
            rows["plots one at a time"] = alone
            corners = site_mosaic(plots, Path(scratch) / f"{site}.tif")
            for overlap in overlaps:
                found = detect(Path(scratch) / f"{site}.tif", model, replace(settings, overlap=overlap))
                rows[f"mosaic, overlap {overlap:g}"] = split_by_plot(found.pixel_boxes, found.scores, corners)
            crowns = sum(len(b) for b in reference.values())
            print(f"\n{site}: {len(plots)} plots of {PLOT_PX} px, {crowns} crowns; threshold {threshold}, "
                  f"view scales {model.metadata.view_scales}", flush=True)
            for name, found in rows.items():
                print(f"  {name:22} {summary(found, reference, threshold)}", flush=True)
                f1_by_row.setdefault(name, []).append(scored(found, reference, threshold).f1)
    print("\nmean F1 over the sites, at each checkpoint's threshold:")
    for name, values in f1_by_row.items():
        print(f"  {name:22} {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
