"""Leave-one-site-out estimate of the 4-site recipe: how it does on a site it has never seen.

The checkpoint shipped until 2026-12-02 learnt from the 4 sites of shared/data/neon alone
(``train_bundled_model.py --data neon --epochs 60 --no-bf16``); this script trains and scores that recipe
without each of its sites in turn, and the diary's "The 4-site checkpoint" (DIARY.md) keeps the figures.
Today's recipe learns from 18 sites and is measured by model/site_folds.py instead.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/leave_one_site_out.py [--sites HARV,OSBS,SJER,TEAK] [--train] [--jobs 2]

For each site, the checkpoint output/leave-one-site-out/without-SITE.safetensors is the
4-site recipe trained on the other three sites (``train_bundled_model.py --data neon --epochs 60
--no-bf16 --leave-out-site SITE``, which also chooses one view or four fused turned views, and the score threshold, on the
other sites' held-out plots). ``--train`` trains the missing or unfinished ones first, ``--jobs`` at a
time with one CPU thread each (about 100-145 minutes each, two at a time, on this project's 2-core machine); a stopped
training goes on from its last finished epoch.
Every plot of the left-out site is then detected through the engine at 0.05, 0.1 and
0.2 m and scored with DeepForest's protocol; pictures of every plot go to
output/leave-one-site-out/pictures/SITE/. Prints the table (the mean is over the sites
scored) and merges the figures into output/leave-one-site-out/summary.json (a site scored
earlier keeps its figures until it is scored again); ``--json FILE`` merges them there too.

To measure a change of recipe against it, train it in its own folder:

    .venv/bin/python model/leave_one_site_out.py --train --sites SJER,OSBS \
        --folder output/loso-wide-scale --recipe "--scale-jitter 0.6,1.6"
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from evaluate_model import DEFAULT_DATA, plot_names, plots_by_name, score_plots  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402
from parallel_training import Run, train_unfinished  # noqa: E402
from parallel_training import finished as training_finished  # noqa: E402
from treecrowns.core.training_state import history_path_beside  # noqa: E402
from treecrowns.core.prediction import DetectionSettings  # noqa: E402

FOLDER = REPO / "output" / "leave-one-site-out"
RESOLUTIONS = (0.05, 0.1, 0.2)
# The 4-site checkpoint's data, epochs and precision; a --recipe given after them overrides them.
FOUR_SITE_RECIPE = ("--data", "neon", "--epochs", "60", "--no-bf16")


def checkpoint_for(folder: Path, site: str) -> Path:
    return folder / f"without-{site}.safetensors"


def finished(folder: Path, site: str) -> bool:
    return training_finished(checkpoint_for(folder, site))


def train_missing(folder: Path, sites: list[str], jobs: int, recipe: list[str]) -> None:
    """Train the leave-one-out checkpoints that are missing or unfinished, ``jobs`` at a time.

    ``recipe`` is extra options for train_bundled_model.py (to try a change of recipe in its own
    folder).
    """
    train_unfinished([
        Run(checkpoint_for(folder, site), folder / f"without-{site}.log",
            [*FOUR_SITE_RECIPE, "--leave-out-site", site, *recipe],
            f"without {site}")
        for site in sites
    ], jobs)


def merge_figures(path: Path, summary: dict) -> None:
    """Write the sites scored now into ``path``; sites scored by an earlier run keep their figures."""
    recorded = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**recorded, **summary}, indent=2, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="HARV,OSBS,SJER,TEAK")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train", action="store_true", help="train the missing or unfinished leave-one-out checkpoints first")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time with --train")
    parser.add_argument("--json", type=Path, help="also merge the figures into this file (sites not scored now keep theirs)")
    parser.add_argument("--folder", type=Path, default=FOLDER, help="where the leave-one-out checkpoints, logs and pictures go")
    parser.add_argument("--recipe", default="", help='extra train_bundled_model.py options, e.g. "--scale-jitter 0.6,1.6"')
    args = parser.parse_args()

    sites = args.sites.split(",")
    folder = args.folder.resolve()
    if args.train:
        train_missing(folder, sites, args.jobs, args.recipe.split())
    absent = [str(checkpoint_for(folder, site)) for site in sites if not finished(folder, site)]
    if absent:
        raise SystemExit(f"missing or unfinished checkpoint(s) {absent}; run with --train")
    items = plots_by_name(args.data)
    summary: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        for site in sites:
            model = load_checkpoint(checkpoint_for(folder, site))
            history = json.loads(history_path_beside(checkpoint_for(folder, site)).read_text())
            names = plot_names(model, items, f"site:{site}")
            row = {"best_epoch": history["best_epoch"], "minutes": history["minutes"],
                   "views": "four" if model.metadata.test_time_augmentation else "one",
                   "view_scales": list(model.metadata.view_scales),
                   "score_threshold": model.metadata.score_threshold}
            for resolution in RESOLUTIONS:
                pictures = folder / "pictures" / site if resolution == 0.1 else None
                row[f"{resolution:g}"] = score_plots(model, items, names, resolution, Path(scratch), pictures)[site]
            # The other way of detecting, at its own calibrated threshold, for comparison.
            other = DetectionSettings(test_time_augmentation=not model.metadata.test_time_augmentation)
            row["other_views_0.1"] = score_plots(model, items, names, 0.1, Path(scratch), None, other)[site]
            summary[site] = row
            print(f"{site}: {json.dumps(row)}", flush=True)
    merge_figures(folder / "summary.json", summary)
    if args.json:
        merge_figures(args.json, summary)

    print("\n| left-out site | plots | crowns | precision | recall | F1 | F1 at 0.05 m | F1 at 0.2 m | views | best epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for site, row in summary.items():
        r = row["0.1"]
        crowns = r["true_positives"] + r["missed"]
        print(f"| {site} | {r['plots']} | {crowns} | {r['precision']:.3f} | {r['recall']:.3f} | **{r['f1']:.3f}** | "
              f"{row['0.05']['f1']:.3f} | {row['0.2']['f1']:.3f} | {row['views']} | {row['best_epoch']} |")
    mean = sum(row["0.1"]["f1"] for row in summary.values()) / len(summary)
    print(f"| mean of {len(summary)} sites | | | | | **{mean:.3f}** | | | | |")
    print("\nthe other way of detecting (at its own calibrated threshold), F1 at 0.1 m:")
    for site, row in summary.items():
        print(f"  {site}: {row['other_views_0.1']['f1']:.3f} with {'one view' if row['views'] == 'four' else 'four views'}")


if __name__ == "__main__":
    main()
