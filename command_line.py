"""Crown detection from the command line, without QGIS: for servers, batch jobs and Dask clusters.

    scripts/treecrowns-detect ORTHOPHOTO CROWNS.gpkg [--cluster local:4 | --cluster tcp://host:8786] [options]

The same engine and the same GeoPackage as ``treecrowns:detect`` in QGIS (core/), with the same
defaults. ORTHOPHOTO is any raster GDAL reads, a VRT, or a folder of tiles of one orthophoto.
Progress goes to standard error a tenth of the run at a time; Ctrl+C stops the run and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core.checkpoint import load_checkpoint
from .core.crown_layer import STATUS_PREDICTED, check_destination, write_crown_geopackage
from .core.errors import Cancelled, TreecrownsError
from .core.prediction import DetectionSettings, Device, detect, every_tenth

BUNDLED_MODEL = Path(__file__).resolve().parent / "resources" / "models" / "treecrowns-neon-lite.safetensors"
VIEWS = {"checkpoint": None, "one": False, "fused": True}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="treecrowns-detect", description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 done, 1 bad input or failed run (the message says why), 130 stopped by Ctrl+C.",
    )
    parser.add_argument("orthophoto", help="raster, VRT or folder of tiles")
    parser.add_argument("output", type=Path, help="GeoPackage to write (.gpkg)")
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL,
                        help="treecrowns or DeepForest checkpoint (default: the bundled model)")
    parser.add_argument("--cluster", default="",
                        help="Dask cluster: empty (this process), local:N (N worker processes here) or tcp://host:port")
    parser.add_argument("--views", choices=sorted(VIEWS), default="checkpoint",
                        help="one view per patch (fastest), four turned views fused, or as the checkpoint says")
    parser.add_argument("--score-threshold", type=float, help="keep crowns scoring at least this (default: checkpoint)")
    parser.add_argument("--overlap", type=float, default=DetectionSettings.overlap, help="patch overlap (fraction)")
    parser.add_argument("--batch-size", type=int, default=DetectionSettings.batch_size, help="patches per batch")
    parser.add_argument("--device", choices=[d.value for d in Device], default=Device.AUTO.value)
    parser.add_argument("--bands", help="red, green and blue band numbers, e.g. 3,2,1")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Detect and write; the number of crowns written."""
    check_destination(args.output.resolve())
    bands = None
    if args.bands:
        parts = args.bands.replace(" ", "").split(",")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise TreecrownsError(f"--bands names three band numbers (red, green, blue) such as 3,2,1, not {args.bands!r}")
        bands = tuple(int(part) for part in parts)
    settings = DetectionSettings(
        score_threshold=args.score_threshold, overlap=args.overlap, batch_size=args.batch_size,
        device=Device(args.device), bands=bands, test_time_augmentation=VIEWS[args.views],
    )
    model = load_checkpoint(args.model)
    to_stderr = every_tenth(lambda message: print(message, file=sys.stderr, flush=True))
    found = detect(args.orthophoto, model, settings, to_stderr, cluster=args.cluster)
    for warning in found.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    write_crown_geopackage(args.output, found.raster.crs_wkt, found.boxes, found.scores, found.labels,
                           [STATUS_PREDICTED] * len(found), str(args.model))
    print(f"{len(found)} tree crowns written to {args.output}")
    return len(found)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        run(args)
    except (Cancelled, KeyboardInterrupt):
        print("stopped; no layer was written", file=sys.stderr)
        return 130
    except TreecrownsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
