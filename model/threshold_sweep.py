"""F1 of one or more checkpoints on every plot of a site, at a range of score thresholds.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/threshold_sweep.py --site HARV --models A.safetensors,B.safetensors
        [--thresholds 0.1,0.15,0.2,0.25,0.3]

A checkpoint's own threshold is chosen on the held-out plots of the sites it was trained on,
so two recipes scored on a new site can differ only because their calibration chose differently.
Scoring both at the same thresholds tells a better network from a better-placed threshold.
Detection runs through the engine at each checkpoint's defaults except the threshold, on the CPU,
afresh at every threshold (exactly as `treecrowns:detect` would run with it), and is scored with
DeepForest's protocol (IoU > 0.4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from evaluate_model import DEFAULT_DATA, plot_names, plots_by_name  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402
from treecrowns.core.evaluation import EvaluationResult, evaluate  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, detect  # noqa: E402


def sweep(model, items: list, thresholds: list[float]) -> list[EvaluationResult]:
    """The score at each threshold, over all ``items`` together."""
    references = {Path(item.image_path).name: item.boxes for item in items}
    results = []
    for threshold in thresholds:
        settings = DetectionSettings(score_threshold=threshold, device="cpu")
        predicted = {Path(item.image_path).name: detect(item.image_path, model, settings).pixel_boxes for item in items}
        results.append(evaluate(predicted, references))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", required=True, help="score every plot of this site (HARV, OSBS, SJER, TEAK)")
    parser.add_argument("--models", required=True, help="comma-separated checkpoints")
    parser.add_argument("--thresholds", default="0.1,0.15,0.2,0.25,0.3", help="comma-separated score thresholds")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with annotations.csv and images/")
    args = parser.parse_args()
    thresholds = [float(v) for v in args.thresholds.split(",")]
    by_name = plots_by_name(args.data)
    items = [by_name[name] for name in plot_names(None, by_name, f"site:{args.site}")]
    print(f"{len(items)} {args.site} plots, {sum(len(item.boxes) for item in items)} reference crowns")
    print("| checkpoint | its threshold | " + " | ".join(f"F1 at {t:g} (P / R)" for t in thresholds) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in thresholds) + " |")
    for model_path in args.models.split(","):
        model = load_checkpoint(model_path)
        cells = [f"{r.f1:.3f} ({r.precision:.3f} / {r.recall:.3f})" for r in sweep(model, items, thresholds)]
        print(f"| {model_path} | {model.metadata.score_threshold:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
