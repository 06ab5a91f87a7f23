"""F1 on sites the recipe never saw: the 18 labelled sites in four folds, each fold held out in turn.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/site_folds.py [--folds 1,2,3,4] [--train] [--jobs 2] [--epochs 60]
        [--folder output/site-folds] [--recipe "--contrast equalised-luminance"] [--json FILE]

The folds are the site groups of model/site_folds.json. For fold N, FOLDER/fold-N.safetensors is
the recipe trained on both labelled folders (shared/data/neon and shared/data/neontree-rf416)
without any plot of the fold's sites; ``--train`` trains the missing or unfinished ones first,
``--jobs`` at a time with one CPU thread each (a stopped training goes on from its last finished
epoch). Every plot of the fold's sites is then detected through the engine at the checkpoint's
defaults (plots without georeference on a copy that states their pixel size) and scored with
DeepForest's protocol (IoU > 0.4), per site and over the fold. Prints one row per fold and
their mean, and writes FOLDER/summary.json (and ``--json``).

``--view-scales 0.5`` detects with the checkpoints' views at other multiples of their ground
resolution instead of their own (0.5: crowns look twice their size), at their own thresholds, to
ask whether a fold fails on the size its crowns appear at; those figures go to
FOLDER/summary-at-0.5.json and leave summary.json alone. ``--one-view`` detects once per patch at
the one-view threshold calibration recorded (FOLDER/summary-one-view.json): the way a network that
costs more per patch would have to ship to keep the speed requirement.
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

from calibrate_model import view_scales_option  # noqa: E402
from plots import Plot, detectable, read_all_plots, site_folds  # noqa: E402
from train_bundled_model import DEFAULT_DATA  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402
from treecrowns.core.evaluation import evaluate  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, detect  # noqa: E402
from parallel_training import Run, train_unfinished  # noqa: E402
from parallel_training import finished as training_finished  # noqa: E402
from treecrowns.core.training_state import history_path_beside  # noqa: E402

FOLDER = REPO / "output" / "site-folds"


def checkpoint_for(folder: Path, fold: int) -> Path:
    return folder / f"fold-{fold}.safetensors"


def finished(folder: Path, fold: int) -> bool:
    return training_finished(checkpoint_for(folder, fold))


def train_missing(folder: Path, folds: dict[int, list[str]], jobs: int, recipe: list[str]) -> None:
    """Train each fold's checkpoint that is missing or unfinished, ``jobs`` at a time with one thread each."""
    train_unfinished([
        Run(checkpoint_for(folder, fold), folder / f"fold-{fold}.log",
            ["--data", DEFAULT_DATA, "--threads", "1", "--leave-out-site", ",".join(sites), *recipe],
            f"without fold {fold} ({','.join(sites)})")
        for fold, sites in folds.items()
    ], jobs)


def training_record(folder: Path, fold: int) -> dict:
    """Best epoch and minutes of a finished training; of a running or stopped one, the epochs done so far."""
    history = history_path_beside(checkpoint_for(folder, fold))
    if history.exists():
        recorded = json.loads(history.read_text())
        return {"best_epoch": recorded["best_epoch"], "minutes": recorded["minutes"], "finished": True}
    log = (folder / f"fold-{fold}.log").read_text().splitlines()
    epochs = [line for line in log if line.startswith("epoch ")]
    saved = [line.split(":")[0].split()[1] for line in epochs if line.endswith("saved")]
    return {"best_epoch": int(saved[-1]) if saved else None, "epochs_done": len(epochs), "finished": False}


def score_fold(checkpoint: Path, plots: list[Plot], scratch: Path, view_scales: tuple[float, ...] | None = None,
               one_view: bool = False) -> dict:
    """Figures per site and over all the plots (key "all"); ``view_scales`` replaces the checkpoint's own,
    ``one_view`` detects once per patch at the threshold calibration chose for one view."""
    model = load_checkpoint(checkpoint)
    if view_scales is not None:
        model.metadata = replace(model.metadata, view_scales=view_scales)
    # The engine's own choice of way: one view at the threshold calibration chose for it.
    settings = DetectionSettings(test_time_augmentation=False) if one_view else DetectionSettings()
    predicted, reference, sites = {}, {}, {}
    for plot in plots:
        found = detect(str(detectable(plot, scratch)), model, settings)
        predicted[plot.name], reference[plot.name], sites[plot.name] = found.pixel_boxes, plot.crowns.boxes, plot.site
    table = {}
    for site in sorted(set(sites.values())):
        names = [name for name, of in sites.items() if of == site]
        table[site] = {**evaluate({n: predicted[n] for n in names}, {n: reference[n] for n in names}).as_dict(),
                       "plots": len(names)}
    overall = evaluate(predicted, reference)
    table["all"] = {**overall.as_dict(), "plots": len(plots), "averaged_per_plot": overall.averaged_over_images()}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", default="1,2,3,4", help="which folds (1-based, as in model/site_folds.json)")
    parser.add_argument("--train", action="store_true", help="train the missing or unfinished fold checkpoints first")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time with --train")
    parser.add_argument("--folder", type=Path, default=FOLDER, help="where the fold checkpoints, logs and summary go")
    parser.add_argument("--recipe", default="", help='extra train_bundled_model.py options, e.g. "--epochs 20"')
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--view-scales", type=view_scales_option,
                        help="detect at these multiples of the ground resolution instead of the checkpoints' own")
    parser.add_argument("--one-view", action="store_true",
                        help="detect once per patch (at the one-view threshold) instead of the checkpoints' own way")
    parser.add_argument("--unfinished", action="store_true",
                        help="score the best epoch so far of trainings still running or stopped (no calibration yet)")
    args = parser.parse_args()

    groups = site_folds()
    folds = {int(n): groups[int(n) - 1] for n in args.folds.split(",")}
    folder = args.folder.resolve()
    if args.train:
        train_missing(folder, folds, args.jobs, args.recipe.split())
    ready = (lambda fold: checkpoint_for(folder, fold).exists()) if args.unfinished else (lambda fold: finished(folder, fold))
    absent = [str(checkpoint_for(folder, fold)) for fold in folds if not ready(fold)]
    if absent:
        raise SystemExit(f"missing or unfinished checkpoint(s) {absent}; run with --train")
    plots = read_all_plots()
    variant = "" if args.view_scales is None else f"-at-{'+'.join(f'{s:g}' for s in args.view_scales)}"
    variant += "-one-view" if args.one_view else ""
    summary_path = folder / f"summary{variant}.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    with tempfile.TemporaryDirectory() as scratch:
        for fold, sites in folds.items():
            table = score_fold(checkpoint_for(folder, fold), [p for p in plots if p.site in sites], Path(scratch),
                               args.view_scales, args.one_view)
            summary[str(fold)] = {"sites": sites, **training_record(folder, fold), "figures": table}
            print(f"fold {fold}: {json.dumps(table['all'])}", flush=True)
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, sort_keys=True))

    print("\n| fold | sites | plots | crowns | precision | recall | F1 | F1 averaged per plot (DeepForest's way) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for fold, row in sorted(summary.items()):
        r = row["figures"]["all"]
        averaged = f"{r['averaged_per_plot']['f1']:.3f}" if "averaged_per_plot" in r else "not recorded"
        print(f"| {fold} | {', '.join(row['sites'])} | {r['plots']} | {r['true_positives'] + r['missed']} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} | **{r['f1']:.3f}** | {averaged} |")
    mean = sum(row["figures"]["all"]["f1"] for row in summary.values()) / len(summary)
    print(f"| mean of {len(summary)} folds | | | | | | **{mean:.3f}** | |")


if __name__ == "__main__":
    main()
