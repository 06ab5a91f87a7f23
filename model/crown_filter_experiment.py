"""Would a stricter clean-up of the fused crowns help on an unseen site?

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/crown_filter_experiment.py [--sites HARV,OSBS,SJER,TEAK] \
        --folders output/leave-one-site-out,output/loso-60-epochs-seed-1
    .venv/bin/python model/crown_filter_experiment.py --site-folds output/site-folds/plain [--folds 1,2]

On a site it has never seen, a leave-one-out model puts several small boxes on one large
crown (SJER's oaks, HARV's broadleaves; see the model card's miss analysis). Two clean-ups
that need no retraining, applied to the crowns after the views are fused:

* a stricter non-maximum suppression: a crown overlapping a better-scoring one by more than
  IoU 0.2 (or 0.1) is dropped;
* containment: a crown lying mostly (a given fraction of its area) inside a better-scoring
  one is dropped, however small it is.

Every way gets its score threshold on the training sites' held-out plots, as training chooses
it, and the left-out site is scored at that threshold. With ``--site-folds`` each fold checkpoint
of model/site_folds.py is scored on every plot of its fold's sites instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from ensemble_experiment import Found, calibrated, f1_at, found_by  # noqa: E402
from evaluate_model import plots_by_name  # noqa: E402
from scale_choice_experiment import add_held_out_options, held_out_runs  # noqa: E402
from treecrowns.core.boxes import areas, class_aware_nms, intersections  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402


def stricter_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """The engine's non-maximum suppression at another IoU (one class: the checkpoints have one)."""
    return class_aware_nms(boxes, scores, np.zeros(len(scores), dtype=np.int64), iou)


def without_contained(boxes: np.ndarray, scores: np.ndarray, share: float) -> np.ndarray:
    """Indices of the crowns that do not lie, by more than ``share`` of their area, inside a better one."""
    box_areas = np.maximum(areas(boxes), 1e-9)
    kept: list[int] = []
    for i in np.argsort(-scores):
        if kept and (intersections(boxes[i : i + 1], boxes[kept])[0] / box_areas[i] > share).any():
            continue
        kept.append(int(i))
    return np.asarray(kept, dtype=int)


WAYS = {
    "as fused": lambda b, s: np.arange(len(s)),
    "NMS 0.2": lambda b, s: stricter_nms(b, s, 0.2),
    "NMS 0.1": lambda b, s: stricter_nms(b, s, 0.1),
    "contained 0.9": lambda b, s: without_contained(b, s, 0.9),
    "contained 0.75": lambda b, s: without_contained(b, s, 0.75),
    "contained 0.5": lambda b, s: without_contained(b, s, 0.5),
}


def filtered(found: Found, way) -> Found:
    result = {}
    for name, (boxes, scores) in found.items():
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        keep = way(boxes, scores) if len(scores) else np.zeros(0, dtype=int)
        result[name] = (boxes[keep], np.asarray(scores)[keep])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_held_out_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = plots_by_name(args.data)
    runs = held_out_runs(args, items)

    print("| checkpoint | left out | " + " | ".join(WAYS) + " |")
    print("| --- " * (len(WAYS) + 2) + "|")
    columns: dict[str, list[float]] = {name: [] for name in WAYS}
    for folder, held_out in runs:
        for run in held_out:
            if not run.finished:
                raise SystemExit(f"{run.checkpoint} is missing or unfinished: run {run.train_command}")
            model = load_checkpoint(run.checkpoint)
            validation = found_by(model, items, model.metadata.provenance["training_data"]["validation_plots"])
            on_site = found_by(model, items, run.plots)
            cells = []
            for name, way in WAYS.items():
                threshold = calibrated(filtered(validation, way), items)
                f1 = f1_at(filtered(on_site, way), items, threshold)
                columns[name].append(f1)
                cells.append(f"{f1:.3f}")
            print(f"| {folder.name} | {run.label} | " + " | ".join(cells) + " |", flush=True)
    print("| mean | | " + " | ".join(f"{np.mean(c):.3f}" for c in columns.values()) + " |")


if __name__ == "__main__":
    main()
