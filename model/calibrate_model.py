"""Choose a checkpoint's score threshold, and whether it detects on four fused turned views, on held-out plots.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/calibrate_model.py --model output/leave-one-site-out/without-OSBS.safetensors [--view-scales 1,1.25]

Scores the checkpoint on its own validation plots (the ones its training held out, as
recorded in the checkpoint), detecting once per patch and with test-time augmentation
(the patch turned four ways, fused), over the same range of score thresholds that
training uses. The better of the two, with its threshold, is written into the
checkpoint (in place unless ``--output`` is given; a copy gets the training history beside the
checkpoint too, so that ``leave_one_site_out.py --folder`` scores a folder of copies as it scores
the originals). ``train_bundled_model.py`` ends
with this step. ``--view-scales`` first sets the scales the turned views are run at
(multiples of the model's ground resolution; see core/views.py), and ``--retraining-learning-rate``
the rate the checkpoint states for retraining on users' corrections.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from evaluate_model import DEFAULT_DATA, plots_by_name  # noqa: E402
from treecrowns.core.checkpoint import (  # noqa: E402
    check_retraining_learning_rate,
    check_view_scales,
    load_checkpoint,
    save_checkpoint,
    way_of_detecting,
)
from treecrowns.core.errors import CheckpointError  # noqa: E402
from treecrowns.core.validation import calibrate_inference  # noqa: E402
from treecrowns.core.training_state import history_path_beside  # noqa: E402

T = TypeVar("T")


def _refused_as_the_checkpoint_would(check: Callable[[T], None], value: T) -> T:
    """``value`` if the checkpoint's own ``check`` accepts it; else its message, as argparse shows errors."""
    try:
        check(value)
    except CheckpointError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def view_scales_option(text: str) -> tuple[float, ...]:
    """``--view-scales 1,1.25`` as a tuple; a clear message for anything else."""
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, such as 1,1.25, not {text!r}") from None
    return _refused_as_the_checkpoint_would(check_view_scales, scales)


def retraining_rate_option(text: str) -> float:
    """``--retraining-learning-rate 0.003`` as a number; a clear message for anything else."""
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.003, not {text!r}") from None
    return _refused_as_the_checkpoint_would(check_retraining_learning_rate, rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with annotations.csv and images/")
    parser.add_argument("--plots", help="comma-separated plot names (default: the checkpoint's validation plots)")
    parser.add_argument("--output", type=Path, help="write here instead of overwriting --model")
    parser.add_argument("--view-scales", type=view_scales_option,
                        help="comma-separated multiples of the ground resolution the turned views run at, e.g. 1,1.25")
    parser.add_argument("--retraining-learning-rate", type=retraining_rate_option,
                        help="also state this learning rate for retraining on users' corrections (the Train dialog's "
                        "default for the checkpoint)")
    args = parser.parse_args()

    model = load_checkpoint(args.model)
    if args.view_scales:
        model.metadata = replace(model.metadata, view_scales=args.view_scales)
    if args.retraining_learning_rate is not None:
        model.metadata = replace(model.metadata, retraining_learning_rate=args.retraining_learning_rate)
    items = plots_by_name(args.data)
    names = args.plots.split(",") if args.plots else model.metadata.provenance.get("training_data", {}).get("validation_plots")
    if not names:
        raise SystemExit(f"{args.model} records no validation plots; name some with --plots")
    missing = [n for n in names if n not in items]
    if missing:
        raise SystemExit(f"no such plot(s) {missing} in {args.data / 'annotations.csv'}")
    model, figures = calibrate_inference(model, [items[n] for n in names])
    for way, row in figures.items():
        print(f"{way:12} P {row['precision']:.3f} R {row['recall']:.3f} F1 {row['f1']:.3f} at score {row['score_threshold']}")
    meta = model.metadata
    print(f"chosen: {way_of_detecting(meta.test_time_augmentation)} at score {meta.score_threshold} "
          f"(views at scales {', '.join(f'{s:g}' for s in meta.view_scales)})")
    save_checkpoint(model, args.output or args.model)
    history = history_path_beside(args.model)
    if args.output and history.exists():
        shutil.copyfile(history, history_path_beside(args.output))


if __name__ == "__main__":
    main()
