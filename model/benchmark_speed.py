"""Seconds per hectare of the bundled model against DeepForest's architecture, in the same run.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/benchmark_speed.py [--size 2000] [--repeats 2] [--threads N]

Both models run through the same engine call (`core.prediction.detect`) on one 10 cm
orthophoto of ``size`` x ``size`` pixels, a mosaic of NEON plots from shared/data/neon.
DeepForest's model is torchvision's ``retinanet_resnet50_fpn`` at DeepForest's settings
(400 px patches, 5 % overlap, upsampled to 800 px, score 0.1, NMS 0.05) with random
weights: speed does not depend on the weights. Each model is timed ``repeats`` times after
one warm-up window, the models taking turns so that a slow spell of the machine slows them
alike; each model's best time counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from treecrowns.core.checkpoint import LoadedModel, ModelMetadata, load_checkpoint, new_model, way_of_detecting  # noqa: E402
from treecrowns.core.model import deepforest_architecture  # noqa: E402
from treecrowns.core.prediction import Device, DetectionSettings, detect  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "neon"


def mosaic(size: int, target: Path) -> Path:
    """A size x size, 10 cm GeoTIFF tiled from the NEON plots (in name order)."""
    plots = sorted((DATA / "images").glob("*.tif")) + sorted((DATA / "unlabeled").glob("*.tif"))
    canvas = np.zeros((3, size, size), dtype=np.uint8)
    tiles = [p for p in plots if rasterio.open(p).shape == (400, 400)]
    index = 0
    for row in range(0, size, 400):
        for col in range(0, size, 400):
            with rasterio.open(tiles[index % len(tiles)]) as src:
                data = src.read([1, 2, 3])
            h, w = min(400, size - row), min(400, size - col)
            canvas[:, row : row + h, col : col + w] = data[:, :h, :w]
            index += 1
    return write_mosaic(canvas, target)


def write_mosaic(canvas: np.ndarray, target: Path) -> Path:
    """A (3, rows, cols) uint8 canvas of NEON plots as a tiled 10 cm GeoTIFF (an arbitrary UTM origin)."""
    profile = {"driver": "GTiff", "width": canvas.shape[2], "height": canvas.shape[1], "count": 3, "dtype": "uint8",
               "crs": "EPSG:32618", "transform": from_origin(730000, 4700000, 0.1, 0.1), "tiled": True}
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(canvas)
    return target


def best_times(raster: Path, runs: list[tuple[str, LoadedModel, DetectionSettings]], repeats: int) -> list[tuple[float, int]]:
    """Each run's best time over ``repeats`` rounds, the runs taking turns in every round, and its crown count."""
    best = [float("inf")] * len(runs)
    counts = [0] * len(runs)
    for _ in range(repeats):
        for index, (_name, model, settings) in enumerate(runs):
            started = time.perf_counter()
            found = detect(raster, model, settings)
            best[index] = min(best[index], time.perf_counter() - started)
            counts[index] = len(found)
    return list(zip(best, counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors")
    parser.add_argument("--json", type=Path, help="write the figures here too (model/write_model_card.py reads them)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    hectares = (args.size * 0.1) ** 2 / 10_000
    bundled = load_checkpoint(args.model)
    deepforest = new_model(
        ModelMetadata(architecture=deepforest_architecture(), labels=("Tree",), ground_resolution_m=0.1,
                      patch_size=400, score_threshold=0.1, nms_threshold=0.05)
    )
    with tempfile.TemporaryDirectory() as scratch:
        raster = mosaic(args.size, Path(scratch) / "mosaic.tif")
        warm_up = Path(scratch) / "warm.tif"
        mosaic(400, warm_up)
        meta = bundled.metadata
        views = way_of_detecting(meta.test_time_augmentation)
        scaled = meta.test_time_augmentation and len(meta.view_scales) > 1
        if scaled:
            views += " × scales " + " and ".join(f"{s:g}" for s in meta.view_scales)
        runs = [
            (f"bundled (lite, 0.2 m, 200 px, {views})", bundled, DetectionSettings(device=Device.CPU)),
            ("DeepForest architecture (400 px -> 800 px)", deepforest, DetectionSettings(overlap=0.05, device=Device.CPU)),
        ]
        if scaled:
            one_scale = LoadedModel(bundled.network, replace(meta, view_scales=(1.0,)))
            runs.append(("bundled, four views at scale 1 only", one_scale, DetectionSettings(device=Device.CPU)))
        if meta.test_time_augmentation:
            runs.append(("bundled, one view", bundled, DetectionSettings(device=Device.CPU, test_time_augmentation=False)))
        for _name, model, settings in runs:
            detect(warm_up, model, settings)
        rows = [(name, seconds, count) for (name, _, _), (seconds, count) in zip(runs, best_times(raster, runs, args.repeats))]
    print(f"raster: {args.size} x {args.size} px at 0.1 m = {hectares:.1f} ha; torch threads: {torch.get_num_threads()}")
    for name, seconds, count in rows:
        print(f"{name:60} {seconds:8.2f} s  {seconds / hectares:8.2f} s/ha  ({count} crowns)")
    speedup = rows[1][1] / rows[0][1]
    print(f"speed-up of the bundled model as it ships ({views}): {speedup:.1f}x")
    if args.json:
        figures = {
            "raster_px": args.size, "hectares": hectares, "threads": torch.get_num_threads(), "speedup": round(speedup, 1),
            "runs": [{"name": name, "seconds": round(seconds, 2), "seconds_per_hectare": round(seconds / hectares, 2)}
                     for name, seconds, _count in rows],
        }
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
