"""Whole-process speed of treecrowns:detect at the shipped defaults against DeepForest's architecture.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python benchmarks/detection_speed.py [--size 2400] [--repeats 2] [--model M] [--compare M2] [--json F]

Every run is a fresh ``scripts/qgis-process run treecrowns:detect``, as a user runs it: starting
QGIS's Python, loading the model, reading, detecting, merging and writing the GeoPackage. The
orthophoto is ``size`` x ``size`` px at 10 cm, the public Yellowstone sample plot mirrored across it
(core.sample_data). DeepForest's architecture is torchvision's ``retinanet_resnet50_fpn`` at
DeepForest's settings (400 px patches at 10 cm upsampled to 800 px, 5 % overlap, score 0.1, NMS
0.05) with random weights, saved as a checkpoint and run through the same algorithm: speed does not
depend on the weights. The runs take turns in every round so that a slow spell of the machine slows
them alike; each run's best time counts. Prints seconds, seconds per hectare and crowns per run,
then DeepForest's time over each of ours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from treecrowns.core.checkpoint import (  # noqa: E402
    LoadedModel,
    ModelMetadata,
    load_checkpoint,
    new_model,
    save_checkpoint,
    way_of_detecting,
)
from treecrowns.core.model import deepforest_architecture  # noqa: E402
from treecrowns.core.sample_data import write_mirrored_orthophoto  # noqa: E402

BUNDLED = REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors"
QGIS_PROCESS = REPO / "scripts" / "qgis-process"


def timed_run(raster: Path, model: Path, options: dict[str, str], output: Path) -> tuple[float, int]:
    """Seconds of one whole treecrowns:detect process, and the crowns it wrote."""
    output.unlink(missing_ok=True)
    arguments = [f"INPUT={raster}", f"MODEL={model}", f"OUTPUT={output}", *(f"{k}={v}" for k, v in options.items())]
    started = time.perf_counter()
    done = subprocess.run([str(QGIS_PROCESS), "--json", "run", "treecrowns:detect", "--", *arguments],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"treecrowns:detect failed with {model.name}:\n{done.stderr[-3000:]}")
    return seconds, int(json.loads(done.stdout[done.stdout.index("{"):])["results"]["CROWN_COUNT"])


def runs_to_time(model_path: Path, scratch: Path) -> list[tuple[str, Path, dict[str, str]]]:
    """(name, checkpoint, treecrowns:detect options): the shipped defaults first, DeepForest's second."""
    bundled = load_checkpoint(model_path)
    meta = bundled.metadata
    views = way_of_detecting(meta.test_time_augmentation)
    scaled = meta.test_time_augmentation and len(meta.view_scales) > 1
    if scaled:
        views += " × scales " + " and ".join(f"{s:g}" for s in meta.view_scales)
    deepforest = new_model(ModelMetadata(architecture=deepforest_architecture(), labels=("Tree",),
                                         ground_resolution_m=0.1, patch_size=400, score_threshold=0.1,
                                         nms_threshold=0.05))
    deepforest_path = save_checkpoint(deepforest, scratch / "deepforest_architecture.safetensors")
    runs = [
        (f"treecrowns as shipped ({views})", model_path, {}),
        ("DeepForest architecture (400 px -> 800 px)", deepforest_path, {"OVERLAP": "0.05"}),
    ]
    if scaled:
        one_scale = LoadedModel(bundled.network, replace(meta, view_scales=(1.0,)))
        runs.append(("four views at scale 1 only", save_checkpoint(one_scale, scratch / "one_scale.safetensors"), {}))
    if meta.test_time_augmentation:
        runs.append(("one view", model_path, {"VIEWS": "1"}))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2400, help="orthophoto side in pixels (10 cm)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", type=Path, default=BUNDLED)
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="another checkpoint to time in the same rounds, at its own defaults; repeat for several")
    parser.add_argument("--json", type=Path, help="write the figures here too (model/write_model_card.py reads them)")
    args = parser.parse_args()
    hectares = (args.size * 0.1) ** 2 / 10_000
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        raster = write_mirrored_orthophoto(args.size, scratch / "orthophoto.tif")
        runs = runs_to_time(args.model, scratch) + [(f"compared: {path.name}", path, {}) for path in args.compare]
        best = [float("inf")] * len(runs)
        counts = [0] * len(runs)
        for _round in range(args.repeats):
            for index, (_name, model, options) in enumerate(runs):
                seconds, counts[index] = timed_run(raster, model, options, scratch / f"crowns_{index}.gpkg")
                best[index] = min(best[index], seconds)
    import torch

    print(f"orthophoto: {args.size} x {args.size} px at 0.1 m = {hectares:.2f} ha; whole qgis_process runs, "
          f"best of {args.repeats}; CPU threads: {torch.get_num_threads()}")
    for (name, _model, _options), seconds, count in zip(runs, best, counts):
        ratio = best[1] / seconds
        print(f"{name:50} {seconds:8.2f} s  {seconds / hectares:7.2f} s/ha  {count:6} crowns  DeepForest / this: {ratio:5.2f}x")
    speedup = best[1] / best[0]
    print(f"DeepForest's architecture / treecrowns at the shipped defaults: {speedup:.2f}x")
    if args.json:
        figures = {
            "raster_px": args.size, "hectares": round(hectares, 2), "threads": torch.get_num_threads(),
            "speedup": round(speedup, 2), "whole_process": True,
            "runs": [{"name": name, "seconds": round(seconds, 2), "seconds_per_hectare": round(seconds / hectares, 2)}
                     for (name, _m, _o), seconds in zip(runs, best)],
        }
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
