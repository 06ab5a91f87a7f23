"""Fold checkpoints reading each patch once at several scales (no turned views), calibrated and scored.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/one_turn_scales_experiment.py --folder output/site-folds/epochs-100-bf16 \
        --scales 1,0.75 --output output/site-folds/scales-0.75-1-one-turn

Reading at 0.15 m beside 0.2 m finds fold 4's small crowns, but the four turned views at both
scales cost 2.8 times the network work of the shipped views. One view at each scale costs 2.8
times one view, less than four turns at one scale: would it keep the small crowns for the price?
The engine runs view scales only with the four turns, so this script makes every run use the
checkpoint's scales (``scales_of_run``), sets them on each fold checkpoint, chooses the score
threshold on the checkpoint's own validation plots (as calibration does) and scores the fold's
held-out sites as ``site_folds.py`` does. Writes the calibrated copies and OUTPUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

import torch  # noqa: E402

from calibrate_model import view_scales_option  # noqa: E402
from evaluate_model import plots_by_name  # noqa: E402
from plots import read_all_plots, site_folds  # noqa: E402
from site_folds import checkpoint_for, score_fold  # noqa: E402
from treecrowns.core import prediction, validation  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from treecrowns.core.patches import load_samples  # noqa: E402
from treecrowns.core.prediction import fit_input_size  # noqa: E402


def every_run_at_the_checkpoint_scales(model, _settings) -> tuple[float, ...]:
    return model.metadata.view_scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True, help="the fold checkpoints (fold-N.safetensors)")
    parser.add_argument("--scales", type=view_scales_option, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    prediction.scales_of_run = every_run_at_the_checkpoint_scales
    validation.scales_of_run = every_run_at_the_checkpoint_scales
    args.output.mkdir(parents=True, exist_ok=True)
    items, plots, summary = plots_by_name(), read_all_plots(), {}
    for fold, sites in enumerate(site_folds(), start=1):
        model = load_checkpoint(checkpoint_for(args.folder, fold))
        model.metadata = replace(model.metadata, view_scales=args.scales, test_time_augmentation=False)
        fit_input_size(model, model.metadata.patch_size)
        names = model.metadata.provenance["training_data"]["validation_plots"]
        samples = load_samples([items[n] for n in names], model.metadata.labels, model.metadata.ground_resolution_m)
        metrics, threshold = validation.validate(model, samples, torch.device("cpu"))
        model.metadata = replace(model.metadata, score_threshold=threshold)
        calibrated = checkpoint_for(args.output, fold)
        save_checkpoint(model, calibrated)
        with tempfile.TemporaryDirectory() as scratch:
            table = score_fold(calibrated, [p for p in plots if p.site in sites], Path(scratch))
        summary[fold] = {"validation": {**metrics, "score_threshold": threshold}, "figures": table}
        print(f"fold {fold}: validation F1 {metrics['f1']:.3f} at {threshold}; held-out sites F1 "
              f"{table['all']['f1']:.3f} (P {table['all']['precision']:.3f}, R {table['all']['recall']:.3f}); "
              + ", ".join(f"{s} {table[s]['f1']:.3f}" for s in sites), flush=True)
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"mean of {len(summary)} folds: {sum(v['figures']['all']['f1'] for v in summary.values()) / len(summary):.3f}")


if __name__ == "__main__":
    main()
