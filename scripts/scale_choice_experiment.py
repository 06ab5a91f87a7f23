"""How much could choosing each site's detection scale add? An upper bound, from the site's own labels.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python scripts/scale_choice_experiment.py --folders output/leave-one-site-out,output/loso-60-epochs-seed-1 \
        [--scales 0.75,1,1.25,1.5,2] [--sites HARV,OSBS,SJER,TEAK]

A model trained on three sites learns their crown sizes, and crowns differ in size from site to
site. Reading a new site's raster finer or coarser than the model's ground resolution changes the
size its crowns appear at, so a tool could pick a scale per raster. Before building a way to pick
it without labels, this measures what the best pick would be worth: each leave-one-out checkpoint
detects every plot of its left-out site in four turned views at one scale at a time (and at its
own view scales, fused, as it ships), each at the checkpoint's own four-view score threshold, and
the table gives F1 and the median predicted crown for every scale. The best scale of each row is
chosen with the site's labels, so it is a ceiling, not a method.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "scripts"))

from calibrate_model import view_scales_option  # noqa: E402
from ensemble_experiment import f1_at, found_by  # noqa: E402
from evaluate_model import DEFAULT_DATA, plots_by_name  # noqa: E402
from leave_one_site_out import checkpoint_for, finished  # noqa: E402
from miss_analysis import crown_sizes_m  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402


def median_crown_m(found: dict, threshold: float, metres_per_pixel: float) -> float:
    """The median predicted crown (square root of its box's area) at ``threshold``, in metres."""
    sizes = [crown_sizes_m(boxes[scores >= threshold], metres_per_pixel) for boxes, scores in found.values()]
    return float(np.median(np.concatenate(sizes)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", required=True, help="comma-separated folders of leave-one-out checkpoints")
    parser.add_argument("--scales", type=view_scales_option, default=(0.75, 1.0, 1.25, 1.5, 2.0),
                        help="multiples of the ground resolution to read each site at, one at a time")
    parser.add_argument("--sites", default="HARV,OSBS,SJER,TEAK")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    items = plots_by_name(args.data)
    metres_per_pixel = 0.1  # the NEON plots' own resolution; boxes come back in the plots' pixels

    for folder in (Path(f) for f in args.folders.split(",")):
        print(f"\n{folder}: F1 (median predicted crown) on the left-out site; best single scale chosen with its labels")
        print("| left-out site | as shipped | " + " | ".join(f"x {s:g}" for s in args.scales) + " | best single scale |")
        print("| --- " * (len(args.scales) + 3) + "|")
        shipped_f1, best_f1 = [], []
        for site in args.sites.split(","):
            if not finished(folder, site):
                raise SystemExit(f"{checkpoint_for(folder, site)} is missing or unfinished; train it with "
                                 f"scripts/leave_one_site_out.py --train --sites {site} --folder {folder}")
            model = load_checkpoint(checkpoint_for(folder, site))
            threshold = model.metadata.score_threshold_for(True)
            plots = sorted(n for n in items if n.split("_")[0] == site)
            cells, scores = [], []
            for scales in (model.metadata.view_scales, *((s,) for s in args.scales)):
                model.metadata = replace(model.metadata, view_scales=scales)
                found = found_by(model, items, plots)
                scores.append(f1_at(found, items, threshold))
                cells.append(f"{scores[-1]:.3f} ({median_crown_m(found, threshold, metres_per_pixel):.1f} m)")
            best = int(np.argmax(scores[1:]))
            shipped_f1.append(scores[0])
            best_f1.append(scores[1 + best])
            print(f"| {site} | " + " | ".join(cells) + f" | x {args.scales[best]:g}: {scores[1 + best]:.3f} |", flush=True)
        print(f"| mean | {np.mean(shipped_f1):.3f} | " + " | " * (len(args.scales) - 1) + f" | {np.mean(best_f1):.3f} |")


if __name__ == "__main__":
    main()
