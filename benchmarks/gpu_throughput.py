"""Square kilometres per minute at 10 cm on one GPU: the bundled model and DeepForest's architecture.

Usage (from the repository root, after scripts/setup.sh, on a machine with a CUDA GPU):

    .venv/bin/python benchmarks/gpu_throughput.py [--size 20000] [--batch-size 32] [--output DIR]

Builds a ``size`` x ``size`` px, 10 cm orthophoto (the public Yellowstone sample plot mirrored
across it; 20,000 px is 4 km2), then detects crowns on it through the engine (core.prediction,
reading on a thread beside the network, float16 on the GPU) with the bundled model at its shipped
views and at one view, and with DeepForest's architecture (torchvision's RetinaNet-ResNet-50 at
DeepForest's settings, random weights: speed does not depend on them). Each is timed after a
warm-up on a small raster. Prints seconds, km2 per minute and crowns for each, and writes them
as JSON under ``--output``. ``--device cpu --size 1200`` checks the script itself on a CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

import torch  # noqa: E402

from treecrowns.core.checkpoint import ModelMetadata, load_checkpoint, new_model  # noqa: E402
from treecrowns.core.model import deepforest_architecture  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, Device, detect  # noqa: E402
from treecrowns.core.sample_data import write_mirrored_orthophoto  # noqa: E402

BUNDLED = REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20000, help="orthophoto side in pixels at 10 cm")
    parser.add_argument("--batch-size", type=int, default=32, help="patches per batch (each seen in its views)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--output", type=Path, default=REPO / "output" / "gpu-throughput")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here; run with --device cpu --size 1200 to check the script on a CPU")
    args.output.mkdir(parents=True, exist_ok=True)
    raster = args.output / f"orthophoto_{args.size}.tif"
    if not raster.exists():
        started = time.perf_counter()
        write_mirrored_orthophoto(args.size, raster)
        print(f"wrote {raster} in {time.perf_counter() - started:.0f} s", flush=True)
    warm_up = write_mirrored_orthophoto(1000, args.output / "warm_up.tif")
    square_km = (args.size * 0.1) ** 2 / 1e6
    device = Device(args.device)
    bundled = load_checkpoint(BUNDLED)
    deepforest = new_model(ModelMetadata(architecture=deepforest_architecture(), labels=("Tree",),
                                         ground_resolution_m=0.1, patch_size=400, score_threshold=0.1,
                                         nms_threshold=0.05))
    shipped = DetectionSettings(device=device, batch_size=args.batch_size)
    runs = [
        ("treecrowns as shipped", bundled, shipped),
        ("treecrowns, one view", bundled, replace(shipped, test_time_augmentation=False)),
        ("DeepForest architecture", deepforest, replace(shipped, overlap=0.05, batch_size=max(1, args.batch_size // 4))),
    ]
    rows = []
    for name, model, settings in runs:
        detect(str(warm_up), model, settings)
        if device == Device.CUDA:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        found = detect(str(raster), model, settings)
        seconds = time.perf_counter() - started
        row = {"name": name, "seconds": round(seconds, 1), "km2_per_minute": round(square_km / seconds * 60, 2),
               "crowns": len(found), "batch_size": settings.batch_size}
        if device == Device.CUDA:
            row["gpu_peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "raster_px": args.size, "square_km": square_km, "device": args.device,
        "gpu": torch.cuda.get_device_name() if device == Device.CUDA else platform.processor(),
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "runs": rows,
    }
    (args.output / "gpu_throughput.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{args.size} x {args.size} px at 0.1 m = {square_km:g} km2 on {summary['gpu']}")
    for row in rows:
        print(f"{row['name']:28} {row['seconds']:8.1f} s  {row['km2_per_minute']:8.2f} km2/min  {row['crowns']:8} crowns")


if __name__ == "__main__":
    main()
