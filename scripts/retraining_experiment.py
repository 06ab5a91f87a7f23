"""Does correcting one plot and retraining with the GUI's defaults help on another plot of the same site?

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python scripts/retraining_experiment.py [--pairs HARV_041:HARV_033,TEAK_059:TEAK_047]

For each pair ``A:B`` the bundled model is scored on plot B; then plot A's reference crowns
stand in for the user's corrections (a fully reviewed plot), the model is retrained from
them with the Train dialog's default settings (``TrainingSettings()``: the same code path
as the dialog's background task), and plot B is scored again. Prints F1 before and after,
and the minutes training took.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from treecrowns.core.annotations import read_deepforest_csv  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint, with_provenance  # noqa: E402
from treecrowns.core.evaluation import evaluate  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, detect  # noqa: E402
from treecrowns.core.training import TrainingSettings, train  # noqa: E402

DEFAULT_PAIRS = "HARV_041:HARV_033,TEAK_059:TEAK_047,SJER_054:SJER_064"


def f1_on(model_path: str, item) -> dict:
    found = detect(item.image_path, load_checkpoint(model_path), DetectionSettings())
    return evaluate({"b": found.pixel_boxes}, {"b": item.boxes}).as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "neon")
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, help="comma-separated TRAIN_PLOT:EVAL_PLOT")
    args = parser.parse_args()
    items = {Path(i.image_path).stem: i for i in read_deepforest_csv(args.data / "annotations.csv")}
    print(f"{'train on':10} {'score on':10} {'F1 before':>9} {'F1 after':>9} {'change':>7} {'minutes':>7}")
    with tempfile.TemporaryDirectory() as scratch:
        for pair in args.pairs.split(","):
            train_plot, eval_plot = pair.split(":")
            before = f1_on(str(args.model), items[eval_plot])
            model = load_checkpoint(args.model)
            model.metadata = with_provenance(model.metadata, parent=str(args.model))
            output = Path(scratch) / f"{train_plot}.safetensors"
            started = time.time()
            train(model, [items[train_plot]], output, TrainingSettings())
            minutes = (time.time() - started) / 60
            after = f1_on(str(output), items[eval_plot])
            print(
                f"{train_plot:10} {eval_plot:10} {before['f1']:9.3f} {after['f1']:9.3f} "
                f"{after['f1'] - before['f1']:+7.3f} {minutes:7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
