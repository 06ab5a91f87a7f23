"""Peak memory of a whole detection run on orthophotos of growing size, as a user runs it.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python benchmarks/detection_memory.py [--sizes 4000,40000] [--views 1] [--keep DIR]

For each size, a size x size px, 10 cm GeoTIFF (tiled, deflate-compressed, written window by
window) is filled with the deepforest package's Yellowstone sample crop, mirrored so that
neighbouring copies meet without seams. Each raster is detected by a fresh
``scripts/qgis-process run treecrowns:detect`` (the shipped defaults, except ``--views``), and
the peak resident memory of that process is read from the kernel's record of the finished
child (``ru_maxrss``); the memory of the process tree is also sampled every second, and the
largest figure up to each tenth of the run printed. Prints, per size: hectares, seconds, crowns and peak memory, then the
ratio of the largest peak to the smallest. The rasters are written to a temporary folder
(``--keep`` keeps them); a 40,000 px raster takes about 3 GB on disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from treecrowns.core.sample_data import write_mirrored_orthophoto  # noqa: E402


def detect_and_measure(raster: Path, output: Path, views: int) -> dict:
    """Run treecrowns:detect in its own process; its seconds, crowns, peak memory and memory over the run.

    The process tree's resident memory is sampled every second (psutil), so that the peak can be
    placed in the run: growing with the ground covered, or at the start or the end.
    """
    import psutil

    started = time.perf_counter()
    child = subprocess.Popen(
        [str(REPO / "scripts" / "qgis-process"), "--json", "run", "treecrowns:detect", "--", f"INPUT={raster}",
         f"OUTPUT={output}", f"VIEWS={views}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    samples: list[tuple[float, float]] = []
    watched = psutil.Process(child.pid)
    while child.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            samples.append((time.perf_counter() - started, sum(p.memory_info().rss for p in tree) / 2**20))
        except psutil.Error:
            pass
        time.sleep(1.0)
    stdout, stderr = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"detection failed on {raster}:\n{stderr[-3000:]}")
    # ru_maxrss of the children is the largest any one child reached: here the qgis_process run just ended.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    crowns = json.loads(stdout[stdout.index("{"):])["results"]["CROWN_COUNT"]
    by_tenth = [round(max((mb for t, mb in samples if t <= seconds * tenth / 10), default=0)) for tenth in range(1, 11)]
    return {"seconds": round(seconds, 1), "crowns": int(crowns), "peak_mb": round(peak_mb),
            "largest_mb_by_tenth_of_run": by_tenth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4000,40000", help="raster sides in pixels, smallest first")
    parser.add_argument("--views", type=int, default=0, help="treecrowns:detect VIEWS (0: as the checkpoint says)")
    parser.add_argument("--keep", type=Path, help="keep the rasters and crown layers in this folder (and reuse them)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for size in sizes:
            raster = folder / f"orthophoto_{size}.tif"
            if not raster.exists():  # kept from an earlier run with --keep
                write_mirrored_orthophoto(size, raster)
            figures = detect_and_measure(raster, folder / f"crowns_{size}.gpkg", args.views)
            # Children's peaks only grow: a smaller raster measured first keeps its own figure.
            rows.append({"size_px": size, "hectares": size * size * 0.01 / 10_000, **figures})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'size (px)':>10} {'ha':>8} {'seconds':>8} {'crowns':>8} {'peak MB':>8}")
    for row in rows:
        print(f"{row['size_px']:>10} {row['hectares']:>8.0f} {row['seconds']:>8.1f} {row['crowns']:>8} {row['peak_mb']:>8}")
    print(f"peak memory, largest raster against smallest: {rows[-1]['peak_mb'] / rows[0]['peak_mb']:.2f}x")


if __name__ == "__main__":
    main()
