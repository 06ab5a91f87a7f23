"""How much could choosing each site's detection scale add? An upper bound, from the site's own labels.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/scale_choice_experiment.py --folders output/leave-one-site-out,output/loso-60-epochs-seed-1 \
        [--scales 0.75,1,1.25,1.5,2] [--sites HARV,OSBS,SJER,TEAK]

A model trained on three sites learns their crown sizes, and crowns differ in size from site to
site. Reading a new site's raster finer or coarser than the model's ground resolution changes the
size its crowns appear at, so a tool could pick a scale per raster. Before building a way to pick
it without labels, this measures what the best pick would be worth: each leave-one-out checkpoint
detects every plot of its left-out site in four turned views at one scale at a time (and at its
own view scales, fused, as it ships), each at the checkpoint's own four-view score threshold, and
the table gives F1 and the median predicted crown for every scale. The best scale of each row is
chosen with the site's labels, so it is a ceiling, not a method.

A second table tries pickers that need no labels, each from the crowns found at every scale: the
scale whose crowns score highest (mean score of the crowns kept, mean of the five best scores, sum
of the kept crowns' scores). Each picks once per plot, as the tool would on one raster, and once
per site, from all its plots together, as on one large orthophoto of the site. A third table fuses
the crowns found at several single scales, as the views of a checkpoint with those view scales
would be (`--fused-sets`), at the checkpoint's threshold.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from calibrate_model import view_scales_option  # noqa: E402
from ensemble_experiment import f1_at, found_by, fused  # noqa: E402
from evaluate_model import DEFAULT_DATA, plots_by_name  # noqa: E402
from leave_one_site_out import checkpoint_for, finished  # noqa: E402
from miss_analysis import crown_sizes_m  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402


def median_crown_m(found: dict, threshold: float, metres_per_pixel: float) -> float:
    """The median predicted crown (square root of its box's area) at ``threshold``, in metres."""
    sizes = [crown_sizes_m(boxes[scores >= threshold], metres_per_pixel) for boxes, scores in found.values()]
    return float(np.median(np.concatenate(sizes)))


def mean_kept_score(scores: np.ndarray, threshold: float) -> float:
    """How sure the network is of the crowns it keeps."""
    kept = scores[scores >= threshold]
    return float(kept.mean()) if len(kept) else 0.0


def mean_of_five_best(scores: np.ndarray, threshold: float) -> float:
    """How sure the network is of its surest crowns, whatever their number."""
    return float(np.sort(scores)[::-1][:5].mean()) if len(scores) else 0.0


def kept_score_sum(scores: np.ndarray, threshold: float) -> float:
    """How much the network finds with some confidence."""
    return float(scores[scores >= threshold].sum())


PICKERS = {"mean kept score": mean_kept_score, "mean of five best scores": mean_of_five_best,
           "sum of kept scores": kept_score_sum}


def picked_without_labels(found_at: list[dict], measure, threshold: float, per_plot: bool) -> tuple[dict, list[int]]:
    """Each plot's crowns at the scale ``measure`` rates highest, per plot or for all plots at once.

    ``found_at`` holds, for each scale, every plot's crowns; returns the chosen crowns and the index
    of the scale chosen for each plot.
    """
    plots = sorted(found_at[0])
    if per_plot:
        choice = [int(np.argmax([measure(found[name][1], threshold) for found in found_at])) for name in plots]
    else:
        pooled = [np.concatenate([found[name][1] for name in plots]) for found in found_at]
        choice = [int(np.argmax([measure(scores, threshold) for scores in pooled]))] * len(plots)
    return {name: found_at[k][name] for name, k in zip(plots, choice)}, choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", required=True, help="comma-separated folders of leave-one-out checkpoints")
    parser.add_argument("--scales", type=view_scales_option, default=(0.75, 1.0, 1.25, 1.5, 2.0),
                        help="multiples of the ground resolution to read each site at, one at a time")
    parser.add_argument("--fused-sets", default="0.75+1,0.75+1.25,0.75+1+1.25",
                        help="comma-separated sets of --scales to fuse, each written like 0.75+1")
    parser.add_argument("--sites", default="HARV,OSBS,SJER,TEAK")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    fused_sets = [tuple(float(x) for x in part.split("+")) for part in args.fused_sets.split(",")]
    if any(scale not in args.scales for scales in fused_sets for scale in scales):
        raise SystemExit(f"--fused-sets {args.fused_sets}: every scale in a set must be one of --scales")
    sites = args.sites.split(",")
    items = plots_by_name(args.data)
    metres_per_pixel = 0.1  # the NEON plots' own resolution; boxes come back in the plots' pixels

    for folder in (Path(f) for f in args.folders.split(",")):
        print(f"\n{folder}: F1 (median predicted crown) on the left-out site; best single scale chosen with its labels")
        print("| left-out site | as shipped | " + " | ".join(f"x {s:g}" for s in args.scales) + " | best single scale |")
        print("| --- " * (len(args.scales) + 3) + "|")
        shipped_f1, best_f1 = [], []
        picked = {(name, per_plot): [] for name in PICKERS for per_plot in (True, False)}
        fused_f1 = {scales: [] for scales in fused_sets}
        for site in sites:
            if not finished(folder, site):
                raise SystemExit(f"{checkpoint_for(folder, site)} is missing or unfinished; train it with "
                                 f"model/leave_one_site_out.py --train --sites {site} --folder {folder}")
            model = load_checkpoint(checkpoint_for(folder, site))
            threshold = model.metadata.score_threshold_for(True)
            plots = sorted(n for n in items if n.split("_")[0] == site)
            cells, scores, found_at = [], [], []
            for scales in (model.metadata.view_scales, *((s,) for s in args.scales)):
                model.metadata = replace(model.metadata, view_scales=scales)
                found = found_by(model, items, plots)
                found_at.append(found)
                scores.append(f1_at(found, items, threshold))
                cells.append(f"{scores[-1]:.3f} ({median_crown_m(found, threshold, metres_per_pixel):.1f} m)")
            best = int(np.argmax(scores[1:]))
            shipped_f1.append(scores[0])
            best_f1.append(scores[1 + best])
            print(f"| {site} | " + " | ".join(cells) + f" | x {args.scales[best]:g}: {scores[1 + best]:.3f} |", flush=True)
            for name, measure in PICKERS.items():
                for per_plot in (True, False):
                    chosen, choice = picked_without_labels(found_at[1:], measure, threshold, per_plot)
                    picks = ", ".join(f"{args.scales[k]:g}: {choice.count(k)}" for k in sorted(set(choice)))
                    picked[name, per_plot].append((site, f1_at(chosen, items, threshold), picks))
            for scales in fused_sets:
                members = [found_at[1 + args.scales.index(scale)] for scale in scales]
                fused_f1[scales].append(f1_at(fused(members), items, threshold))
        print(f"| mean | {np.mean(shipped_f1):.3f} | " + " | " * (len(args.scales) - 1) + f" | {np.mean(best_f1):.3f} |")
        print(f"\n{folder}: F1 on the left-out site with the scale picked without labels (scale: plots picked at it)")
        print("| picker | picks for | " + " | ".join(sites) + " | mean |")
        print("| --- " * (len(sites) + 3) + "|")
        for (name, per_plot), rows in picked.items():
            cells = " | ".join(f"{f1:.3f} ({picks})" for _, f1, picks in rows)
            print(f"| {name} | {'each plot' if per_plot else 'the whole site'} | {cells} | {np.mean([r[1] for r in rows]):.3f} |")
        print(f"\n{folder}: F1 on the left-out site with views at several scales fused")
        print("| view scales | " + " | ".join(sites) + " | mean |")
        print("| --- " * (len(sites) + 2) + "|")
        print("| as shipped | " + " | ".join(f"{f1:.3f}" for f1 in shipped_f1) + f" | {np.mean(shipped_f1):.3f} |")
        for scales, values in fused_f1.items():
            print(f"| {', '.join(f'{x:g}' for x in scales)} | " + " | ".join(f"{f1:.3f}" for f1 in values)
                  + f" | {np.mean(values):.3f} |")


if __name__ == "__main__":
    main()
