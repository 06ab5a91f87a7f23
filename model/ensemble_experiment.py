"""Do several leave-one-out checkpoints of one recipe, fused like views, beat each of them alone?

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/ensemble_experiment.py [--sites HARV,OSBS,SJER,TEAK] \
        --folders output/leave-one-site-out,output/loso-60-epochs-seed-1 [--view-scales 1]

One training run of a recipe is a noisy draw (the seed alone moves a left-out site's F1 by up
to 0.13 and the four-site mean by 0.05; see the model card), and averaging several networks
usually steadies that. Here the checkpoints trained without a site in each folder
(``without-SITE.safetensors``, for instance the same recipe with different seeds) detect on
every plot: each in its four turned views, at its own view scales or at ``--view-scales``,
keeping crowns down to the views' score floor. The members' crowns are then fused as the views
and scales are (``core.views``): a crown's score is the mean of each member's best score for it.

Every member and the ensemble get their score threshold the way training chooses it: the best
F1 on the training sites' held-out plots (the members' validation plots), never on the left-out
site. Prints, for each left-out site, each member's F1 and the ensemble's at those thresholds.
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
from evaluate_model import DEFAULT_DATA, plots_by_name  # noqa: E402
from leave_one_site_out import checkpoint_for, finished  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402
from treecrowns.core.evaluation import evaluate  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, detect  # noqa: E402
from treecrowns.core.validation import CALIBRATION_THRESHOLDS  # noqa: E402
from treecrowns.core.views import VIEW_SCORE_FLOOR, fuse_scales  # noqa: E402

Found = dict[str, tuple[np.ndarray, np.ndarray]]  # plot name -> (pixel boxes, scores)


def found_by(model, items: dict, names: list[str]) -> Found:
    """Crowns a checkpoint finds on each plot in four turned views, down to the views' floor."""
    settings = DetectionSettings(score_threshold=VIEW_SCORE_FLOOR, test_time_augmentation=True)
    found = {}
    for name in names:
        crowns = detect(items[name].image_path, model, settings)
        found[name] = (crowns.pixel_boxes, crowns.scores)
    return found


def fused(members: list[Found]) -> Found:
    """The members' crowns on each plot fused into one set, as views are."""
    result = {}
    for name in members[0]:
        parts = [(b, s, np.zeros(len(s), dtype=np.int64)) for b, s in (m[name] for m in members)]
        boxes, scores, _ = fuse_scales(parts, VIEW_SCORE_FLOOR)
        result[name] = (boxes, scores)
    return result


def f1_at(found: Found, items: dict, threshold: float) -> float:
    kept = {name: boxes[scores >= threshold] for name, (boxes, scores) in found.items()}
    return evaluate(kept, {name: items[name].boxes for name in found}).f1


def calibrated(found: Found, items: dict) -> float:
    """The threshold with the best F1 on these plots (the lowest, on a tie)."""
    return max(CALIBRATION_THRESHOLDS, key=lambda t: (f1_at(found, items, t), -t))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="HARV,OSBS,SJER,TEAK")
    parser.add_argument("--folders", required=True, help="comma-separated folders of leave-one-out checkpoints")
    parser.add_argument("--view-scales", type=view_scales_option, help="replace every member's view scales, e.g. 1")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    folders = [Path(f) for f in args.folders.split(",")]
    if len(folders) < 2:
        raise SystemExit("--folders needs at least two folders to fuse")
    items = plots_by_name(args.data)

    print("| left-out site | " + " | ".join(f"{f.name} (threshold)" for f in folders) + " | fused (threshold) |")
    print("| --- " * (len(folders) + 2) + "|")
    for site in args.sites.split(","):
        models = []
        for folder in folders:
            if not finished(folder, site):
                raise SystemExit(f"{checkpoint_for(folder, site)} is missing or unfinished; train it with "
                                 f"model/leave_one_site_out.py --train --sites {site} --folder {folder}")
            model = load_checkpoint(checkpoint_for(folder, site))
            if args.view_scales:
                model.metadata = replace(model.metadata, view_scales=args.view_scales)
            models.append(model)
        validation = models[0].metadata.provenance["training_data"]["validation_plots"]
        plots = sorted(n for n in items if n.split("_")[0] == site)
        on_validation = [found_by(m, items, validation) for m in models]
        on_site = [found_by(m, items, plots) for m in models]
        cells = []
        for val, test in [*zip(on_validation, on_site), (fused(on_validation), fused(on_site))]:
            threshold = calibrated(val, items)
            cells.append(f"{f1_at(test, items, threshold):.3f} ({threshold:g})")
        print(f"| {site} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
