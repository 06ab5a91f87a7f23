"""How much could choosing each site's detection scale add? An upper bound, from the site's own labels.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/scale_choice_experiment.py --folders output/leave-one-site-out,output/loso-60-epochs-seed-1 \
        [--scales 0.75,1,1.25,1.5,2] [--sites HARV,OSBS,SJER,TEAK]
    .venv/bin/python model/scale_choice_experiment.py --site-folds output/site-folds/plain --scales 0.5,0.75,1,1.5,2 \
        --fused-sets 0.5+1 [--folds 1,2,3,4]

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

With ``--site-folds`` each fold checkpoint of model/site_folds.py reads the plots of its fold's
sites instead (one row per fold; "all at once" then picks one scale for the fold's plots).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from calibrate_model import view_scales_option  # noqa: E402
from ensemble_experiment import f1_at, found_by, fused  # noqa: E402
from evaluate_model import DEFAULT_DATA, plots_by_name, site_of  # noqa: E402
import leave_one_site_out  # noqa: E402
import site_folds  # noqa: E402
from plots import site_folds as fold_groups  # noqa: E402
from miss_analysis import crown_sizes_m, raster_pixel_size_m  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402


def median_crown_m(found: dict, pixel_size_m: dict[str, float], threshold: float) -> float:
    """The median predicted crown (square root of its box's area) at ``threshold``, in metres."""
    sizes = [crown_sizes_m(boxes[scores >= threshold], pixel_size_m[name]) for name, (boxes, scores) in found.items()]
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


@dataclass(frozen=True)
class HeldOut:
    """One checkpoint and the plots of the sites it never saw."""

    label: str
    checkpoint: Path
    finished: bool
    plots: list[str]
    train_command: str


def held_out_of_leave_one_site_out(folder: Path, sites: list[str], items: dict) -> list[HeldOut]:
    return [HeldOut(site, leave_one_site_out.checkpoint_for(folder, site), leave_one_site_out.finished(folder, site),
                    sorted(n for n in items if site_of(n) == site),
                    f"model/leave_one_site_out.py --train --sites {site} --folder {folder}")
            for site in sites]


def held_out_of_site_folds(folder: Path, folds: list[int], items: dict) -> list[HeldOut]:
    groups = fold_groups()
    return [HeldOut(f"fold {fold}", site_folds.checkpoint_for(folder, fold), site_folds.finished(folder, fold),
                    sorted(n for n in items if site_of(n) in groups[fold - 1]),
                    f"model/site_folds.py --train --folds {fold} --folder {folder}")
            for fold in folds]


def add_held_out_options(parser: argparse.ArgumentParser) -> None:
    """--folders (leave-one-site-out) or --site-folds checkpoints, with --sites, --folds and --data."""
    checkpoints = parser.add_mutually_exclusive_group(required=True)
    checkpoints.add_argument("--folders", help="comma-separated folders of leave-one-out checkpoints")
    checkpoints.add_argument("--site-folds", help="comma-separated folders of site-fold checkpoints (model/site_folds.py)")
    parser.add_argument("--sites", default="HARV,OSBS,SJER,TEAK", help="with --folders: the left-out sites")
    parser.add_argument("--folds", default="1,2,3,4", help="with --site-folds: which folds")
    parser.add_argument("--data", default=DEFAULT_DATA)


def held_out_runs(args: argparse.Namespace, items: dict) -> list[tuple[Path, list[HeldOut]]]:
    """Each checkpoint folder the options of ``add_held_out_options`` name, with its checkpoints' held-out plots."""
    if args.folders:
        return [(Path(f), held_out_of_leave_one_site_out(Path(f), args.sites.split(","), items))
                for f in args.folders.split(",")]
    folds = [int(n) for n in args.folds.split(",")]
    return [(Path(f), held_out_of_site_folds(Path(f), folds, items)) for f in args.site_folds.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_held_out_options(parser)
    parser.add_argument("--scales", type=view_scales_option, default=(0.75, 1.0, 1.25, 1.5, 2.0),
                        help="multiples of the ground resolution to read each site at, one at a time")
    parser.add_argument("--fused-sets", default="0.75+1,0.75+1.25,0.75+1+1.25",
                        help="comma-separated sets of --scales to fuse, each written like 0.75+1")
    args = parser.parse_args()
    fused_sets = [tuple(float(x) for x in part.split("+")) for part in args.fused_sets.split(",")]
    if any(scale not in args.scales for scales in fused_sets for scale in scales):
        raise SystemExit(f"--fused-sets {args.fused_sets}: every scale in a set must be one of --scales")
    items = plots_by_name(args.data)
    for folder, held_out in held_out_runs(args, items):
        report(folder, held_out, items, args.scales, fused_sets)


def report(folder: Path, held_out: list[HeldOut], items: dict, scales: tuple[float, ...], fused_sets: list[tuple]) -> None:
    """The three tables for one folder of checkpoints."""
    labels = [unit.label for unit in held_out]
    print(f"\n{folder}: F1 (median predicted crown) on the held-out plots; best single scale chosen with their labels")
    print("| held out | as shipped | " + " | ".join(f"x {s:g}" for s in scales) + " | best single scale |")
    print("| --- " * (len(scales) + 3) + "|")
    shipped_f1, best_f1 = [], []
    picked = {(name, per_plot): [] for name in PICKERS for per_plot in (True, False)}
    fused_f1 = {scale_set: [] for scale_set in fused_sets}
    for unit in held_out:
        if not unit.finished:
            raise SystemExit(f"{unit.checkpoint} is missing or unfinished; train it with {unit.train_command}")
        model = load_checkpoint(unit.checkpoint)
        threshold = model.metadata.score_threshold_for(True)
        pixel_size_m = {name: raster_pixel_size_m(items[name].image_path) for name in unit.plots}
        cells, scores, found_at, found_for = [], [], [], {}
        for view_scales in (model.metadata.view_scales, *((s,) for s in scales)):
            if view_scales not in found_for:
                model.metadata = replace(model.metadata, view_scales=view_scales)
                found_for[view_scales] = found_by(model, items, unit.plots)
            found = found_for[view_scales]
            found_at.append(found)
            scores.append(f1_at(found, items, threshold))
            cells.append(f"{scores[-1]:.3f} ({median_crown_m(found, pixel_size_m, threshold):.1f} m)")
        best = int(np.argmax(scores[1:]))
        shipped_f1.append(scores[0])
        best_f1.append(scores[1 + best])
        print(f"| {unit.label} | " + " | ".join(cells) + f" | x {scales[best]:g}: {scores[1 + best]:.3f} |", flush=True)
        for name, measure in PICKERS.items():
            for per_plot in (True, False):
                chosen, choice = picked_without_labels(found_at[1:], measure, threshold, per_plot)
                picks = ", ".join(f"{scales[k]:g}: {choice.count(k)}" for k in sorted(set(choice)))
                picked[name, per_plot].append((unit.label, f1_at(chosen, items, threshold), picks))
        for scale_set in fused_sets:
            members = [found_at[1 + scales.index(scale)] for scale in scale_set]
            fused_f1[scale_set].append(f1_at(fused(members), items, threshold))
    print(f"| mean | {np.mean(shipped_f1):.3f} | " + " | " * (len(scales) - 1) + f" | {np.mean(best_f1):.3f} |")
    print(f"\n{folder}: F1 on the held-out plots with the scale picked without labels (scale: plots picked at it)")
    print("| picker | picks for | " + " | ".join(labels) + " | mean |")
    print("| --- " * (len(labels) + 3) + "|")
    for (name, per_plot), rows in picked.items():
        cells = " | ".join(f"{f1:.3f} ({picks})" for _, f1, picks in rows)
        print(f"| {name} | {'each plot' if per_plot else 'all at once'} | {cells} | {np.mean([r[1] for r in rows]):.3f} |")
    print(f"\n{folder}: F1 on the held-out plots with views at several scales fused")
    print("| view scales | " + " | ".join(labels) + " | mean |")
    print("| --- " * (len(labels) + 2) + "|")
    print("| as shipped | " + " | ".join(f"{f1:.3f}" for f1 in shipped_f1) + f" | {np.mean(shipped_f1):.3f} |")
    for scale_set, values in fused_f1.items():
        print(f"| {', '.join(f'{x:g}' for x in scale_set)} | " + " | ".join(f"{f1:.3f}" for f1 in values)
              + f" | {np.mean(values):.3f} |")


if __name__ == "__main__":
    main()
