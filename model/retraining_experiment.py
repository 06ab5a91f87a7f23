"""Does correcting one plot and retraining with the GUI's defaults help on the other plots of the site?

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/retraining_experiment.py --site HARV --train-plots HARV_041,HARV_022
        [--model CHECKPOINT] [--set learning_rate=0.001 --set epochs=5]

For each training plot, its reference crowns stand in for the user's corrections (a fully
reviewed plot); the model is retrained from them with the Train dialog's default settings
(``TrainingSettings()``, the same code path, ``core.retraining.retrain``, as the dialog's background task, changed only by
``--set``), and every other plot of the site is scored before and after (pooled, DeepForest's
protocol). With the bundled model, plots it was trained on are left out of the scoring.

The closest stand-in for a site the model has never seen is a model trained without it:

    .venv/bin/python model/train_bundled_model.py --leave-out-site HARV
    .venv/bin/python model/retraining_experiment.py --site HARV \\
        --model output/leave-one-site-out/without-HARV.safetensors

On sites the model already knows, ``--known-sites`` corrects one held-out plot of every site
with two or more held-out places (the checkpoint records its validation plots; both data folders)
and scores the site's other held-out places, so the measure spans several sites, not one:

    .venv/bin/python model/retraining_experiment.py --known-sites [--model CHECKPOINT]

``--new-sites`` does the same on every site the checkpoint never trained on (the site's first plot
with enough crowns corrected, its other places scored): with a checkpoint trained on fewer sites,
the closest stand-in for a user's new site, measured over several sites at once:

    .venv/bin/python model/retraining_experiment.py --new-sites --model FOUR_SITE_CHECKPOINT --sites ABBY,BART

``--sample-plots`` needs no training data: the two Yellowstone plots the deepforest wheel ships
(raw NEON colours, a site none of the training data holds; ``scripts/setup.sh`` unpacks them) are
each corrected in turn and the other scored. They measure the loop, never choose its defaults:

    .venv/bin/python model/retraining_experiment.py --sample-plots [--model CHECKPOINT]

With ``--corrected-plots N`` those modes correct each site's first N plots (one per place) and
retrain on them together, as a user who reviewed several plots before retraining would.

A plot whose reference leaves crowns unmarked (HARV_022 marks seven crowns of a closed canopy)
teaches that those crowns are background. ``--reviewed-margin METRES`` stands in for a user who
marks what was reviewed: the training plot's reviewed areas become its crowns grown by that
margin, so training sees only those areas (the Train dialog's "Only crowns inside reviewed
areas", REGIONS in ``treecrowns:train``).

``--one-view`` detects once per patch at the checkpoint's one-view threshold instead of as it ships:
what the network itself learnt, scored as the slow retraining test scores it
(``--site HARV --train-plots HARV_041 --one-view`` is that test's pair for any checkpoint).

Prints F1 on the scored plots before and after at each checkpoint's score threshold, F1 on the
corrected plot itself before and after (did the model learn the corrections?), the F1 the new
model would reach on the scored plots at other thresholds (to tell calibration from learning), and
the minutes training took. With two or more corrected plots the Train dialog's check also runs
(``core.retraining``: models retrained without each group of the plots in turn, scored on it): its
figures, and the change "as offered", where the dock keeps the base model when the check judges the
new one worse.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from shapely.geometry import box as shapely_box
from shapely.ops import unary_union

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from treecrowns.core.annotations import ImageAnnotations, read_deepforest_csv  # noqa: E402
from treecrowns.core.checkpoint import LoadedModel, load_checkpoint, with_provenance  # noqa: E402
from treecrowns.core.errors import TreecrownsError  # noqa: E402
from treecrowns.core.evaluation import evaluate  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, detect  # noqa: E402
from treecrowns.core.raster import RasterReader  # noqa: E402
from treecrowns.core.retraining import retrain  # noqa: E402
from treecrowns.core.training import TrainingResult  # noqa: E402
from treecrowns.core.training_settings import TrainingSettings, with_learning_rate_for  # noqa: E402

DEFAULT_MODEL = REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors"
SWEEP = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


def settings_from(pairs: list[str]) -> TrainingSettings:
    """TrainingSettings() with ``name=value`` overrides, typed like the defaults."""
    defaults = TrainingSettings()
    changes = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in {f.name for f in dataclasses.fields(TrainingSettings)}:
            raise SystemExit(f"--set {pair}: TrainingSettings has no field {name!r}")
        current = getattr(defaults, name)
        if isinstance(current, bool) or (current is None and value.lower() in ("true", "false", "yes", "no")):
            changes[name] = value.lower() in ("1", "true", "yes")
        elif current is None or isinstance(current, (int, float)):
            changes[name] = float(value) if isinstance(current, float) or any(c in value for c in ".eE") else int(value)
        elif isinstance(current, str):
            changes[name] = value
        elif isinstance(current, tuple):
            changes[name] = tuple(float(v) for v in value.split(","))
        else:
            raise SystemExit(f"--set {pair}: only number, text, yes/no and comma-separated number fields can be changed here")
    try:
        return dataclasses.replace(defaults, **changes)
    except TreecrownsError as exc:
        raise SystemExit(f"--set: {exc}") from exc


def reviewed_around_crowns(item: ImageAnnotations, margin_m: float) -> ImageAnnotations:
    """``item`` with its reviewed areas set to its crowns grown by ``margin_m`` (pixel polygons, merged)."""
    with RasterReader(item.image_path) as reader:
        resolution = reader.info.ground_resolution_m
    if resolution is None:
        raise SystemExit(f"{item.image_path}: no ground resolution, so a margin in metres has no size in pixels")
    margin_px = margin_m / resolution[0]
    grown = unary_union([shapely_box(*map(float, b)).buffer(margin_px, join_style=2) for b in item.boxes])
    parts = tuple(getattr(grown, "geoms", [grown]))
    return dataclasses.replace(item, regions=parts)


def threshold_of(model: LoadedModel, one_view: bool) -> float:
    """The checkpoint's score threshold for the way the plots are detected."""
    return model.metadata.score_threshold_for(test_time_augmentation=False) if one_view else model.metadata.score_threshold


def detections(model: LoadedModel, items, one_view: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Boxes and scores per plot, down to the lowest score swept (or the checkpoint's threshold if lower).

    As the checkpoint ships (its views), or with ``one_view`` once per patch: what the network itself learnt.
    """
    settings = DetectionSettings(
        score_threshold=min(SWEEP[0], threshold_of(model, one_view)),
        test_time_augmentation=False if one_view else None,
    )
    found = {}
    for name, item in items.items():
        result = detect(item.image_path, model, settings)
        found[name] = (result.pixel_boxes, result.scores)
    return found


def f1_at(found, items, threshold: float) -> float:
    kept = {name: boxes[scores >= threshold] for name, (boxes, scores) in found.items()}
    return evaluate(kept, {name: item.boxes for name, item in items.items()}).as_dict()["f1"]


def retrained(
    model_path: Path, corrections: list[ImageAnnotations], settings: TrainingSettings, scratch: Path
) -> tuple[LoadedModel, TrainingResult]:
    """The checkpoint at ``model_path`` retrained on the corrected plots, as the Train dialog would, and its verdict."""
    model = load_checkpoint(model_path)
    model.metadata = with_provenance(model.metadata, parent=str(model_path))
    output = scratch / f"{Path(corrections[0].image_path).stem}.safetensors"
    result = retrain(model, corrections, output, settings)
    return load_checkpoint(output), result


def correct_and_score(
    args: argparse.Namespace,
    settings: TrainingSettings,
    base: LoadedModel,
    corrections: list[ImageAnnotations],
    scored: dict,
    base_found: dict,
    scratch: Path,
) -> tuple[float, float]:
    """Retrain on the corrected plots, score the new model on ``scored`` and the corrected plots, print a row.

    ``base_found`` holds the base model's detections on the scored plots. Returns the change in F1
    on ``scored`` of the retrained model, and of the model the dock offers next (the base model
    when the retraining's check judged the new one worse).
    """
    before = f1_at({n: base_found[n] for n in scored}, scored, threshold_of(base, args.one_view))
    if args.reviewed_margin is not None:
        corrections = [reviewed_around_crowns(item, args.reviewed_margin) for item in corrections]
    started = time.time()
    tuned, result = retrained(args.model, corrections, settings, scratch)
    minutes = (time.time() - started) / 60
    after_found = detections(tuned, scored, args.one_view)
    after = f1_at(after_found, scored, threshold_of(tuned, args.one_view))
    sweep = " ".join(f"{f1_at(after_found, scored, t):.2f}" for t in SWEEP)
    itself = {Path(item.image_path).stem: item for item in corrections}
    name = next(iter(itself)) + (f" +{len(itself) - 1}" if len(itself) > 1 else "")
    itself_before = f1_at(detections(base, itself, args.one_view), itself, threshold_of(base, args.one_view))
    itself_after = f1_at(detections(tuned, itself, args.one_view), itself, threshold_of(tuned, args.one_view))
    # What the user detects with next: the dock keeps the base model when the new one is judged worse.
    offered = before if result.worse_than_base else after
    verdict = (f"{result.metrics['f1']:.3f}/{result.base_metrics['f1']:.3f}{' worse' if result.worse_than_base else ''}"
               if result.base_metrics else "not judged")
    print(
        f"{name:15} {sum(len(item.labels) for item in corrections):6d} {len(scored):6d} {before:9.3f} {after:9.3f} "
        f"{after - before:+7.3f} {offered - before:+8.3f} {minutes:5.1f}  {verdict:18} {itself_before:.3f} -> {itself_after:.3f}  "
        f"{sweep} (thr {threshold_of(tuned, args.one_view)})",
        flush=True,
    )
    return after - before, offered - before


def one_site(args: argparse.Namespace, settings: TrainingSettings, base: LoadedModel, scratch: Path) -> list[tuple[float, float]]:
    """Each training plot of ``args.site`` corrected in turn; the site's other plots the base did not train on scored."""
    seen = set(base.metadata.provenance.get("training_data", {}).get("train_plots", []))
    items = {Path(i.image_path).stem: i for i in read_deepforest_csv(args.data / "annotations.csv")}
    site_plots = sorted(name for name in items if name.startswith(args.site + "_"))
    train_plots = args.train_plots.split(",") if args.train_plots else site_plots[:3]
    unseen = {n: items[n] for n in site_plots if f"{n}.tif" not in seen}
    base_found = detections(base, unseen, args.one_view)  # the base model is the same for every training plot
    changes = []
    for train_plot in train_plots:
        scored = {n: item for n, item in unseen.items() if n != train_plot}
        changes.append(correct_and_score(args, settings, base, [items[train_plot]], scored, base_found, scratch))
    return changes


def known_sites(args: argparse.Namespace, settings: TrainingSettings, base: LoadedModel, scratch: Path) -> list[tuple[float, float]]:
    """On every site with two or more held-out places, one held-out plot corrected, the other places scored.

    The held-out plots are those the checkpoint records as its validation plots (both labelled
    folders): the model knows the site from its other plots but never trained on these.
    """
    from plots import read_all_plots  # the model folder's own module

    held = set(base.metadata.provenance.get("training_data", {}).get("validation_plots", []))
    if not held:
        raise SystemExit(f"{args.model} records no validation plots, so there is no known site to measure on")
    by_site: dict[str, list] = {}
    for plot in read_all_plots():
        if Path(plot.crowns.image_path).name in held:
            by_site.setdefault(plot.site, []).append(plot)
    return corrected_plots_per_site(args, settings, base, by_site, scratch)


def new_sites(args: argparse.Namespace, settings: TrainingSettings, base: LoadedModel, scratch: Path) -> list[tuple[float, float]]:
    """On every site the checkpoint never trained on (or those of ``args.sites``), one plot corrected, the rest scored."""
    from plots import read_all_plots  # the model folder's own module

    trained_on = set(base.metadata.provenance.get("training_data", {}).get("train_plots", []))
    wanted = set(args.sites.split(",")) if args.sites else None
    by_site: dict[str, list] = {}
    for plot in read_all_plots():
        by_site.setdefault(plot.site, []).append(plot)
    unseen = {
        site: plots
        for site, plots in by_site.items()
        if not any(Path(p.crowns.image_path).name in trained_on for p in plots) and (wanted is None or site in wanted)
    }
    return corrected_plots_per_site(args, settings, base, unseen, scratch)


def corrected_plots_per_site(
    args: argparse.Namespace, settings: TrainingSettings, base: LoadedModel, by_site: dict[str, list], scratch: Path
) -> list[tuple[float, float]]:
    """For each site, its first ``args.corrected_plots`` plots with ``args.min_crowns`` crowns corrected, its other places scored.

    Plots are taken in the order the data folders list them, one per place; the other flight year
    of a corrected place is left out of both. Sites with no place left to score are skipped.
    """
    from plots import detectable  # the model folder's own module

    def readable(plot) -> ImageAnnotations:
        return dataclasses.replace(plot.crowns, image_path=str(detectable(plot, scratch)), pixel_size_m=None)

    changes = []
    for _site, plots in sorted(by_site.items()):
        corrected, places = [], set()
        for plot in plots:
            if len(corrected) < args.corrected_plots and len(plot.crowns.labels) >= args.min_crowns and plot.place not in places:
                corrected.append(plot)
                places.add(plot.place)
        scored = {p.name: readable(p) for p in plots if p.place not in places}
        if len(corrected) < args.corrected_plots or not scored:
            continue
        found = detections(base, scored, args.one_view)
        changes.append(correct_and_score(args, settings, base, [readable(p) for p in corrected], scored, found, scratch))
    return changes


def yellowstone_sample_plots(
    args: argparse.Namespace, settings: TrainingSettings, base: LoadedModel, scratch: Path
) -> list[tuple[float, float]]:
    """Each Yellowstone sample plot corrected in turn, the other scored: a site no checkpoint trains on, in raw colours.

    The plots are PNGs without georeference; their 10 cm copies are what a user who georeferenced
    them would detect on and correct.
    """
    from treecrowns.core.sample_data import SAMPLE_PLOTS, georeferenced_copy, sample_plot

    names = [name for name in SAMPLE_PLOTS if "_YELL_" in name]
    items = {name: georeferenced_copy(sample_plot(name), scratch / f"{name}.tif").crowns for name in names}
    base_found = detections(base, items, args.one_view)
    changes = []
    for corrected in names:
        scored = {name: item for name, item in items.items() if name != corrected}
        changes.append(correct_and_score(args, settings, base, [items[corrected]], scored, base_found, scratch))
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "neon")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--site", help="HARV, OSBS, SJER or TEAK")
    where.add_argument(
        "--known-sites",
        action="store_true",
        help="every site with two or more held-out places in the checkpoint's validation plots (both data folders)",
    )
    where.add_argument(
        "--new-sites",
        action="store_true",
        help="every site the checkpoint never trained on that has two or more places (both data folders)",
    )
    where.add_argument(
        "--sample-plots",
        action="store_true",
        help="the two Yellowstone sample plots of the deepforest wheel, each corrected in turn and the other scored",
    )
    parser.add_argument("--sites", help="--new-sites: only these sites, comma-separated")
    parser.add_argument("--train-plots", help="comma-separated plots to correct, one at a time (default: the first three)")
    parser.add_argument("--min-crowns", type=int, default=15, help="--known-sites, --new-sites: the fewest crowns a corrected plot has")
    parser.add_argument("--corrected-plots", type=int, default=1,
                        help="--known-sites, --new-sites: how many of each site's plots are corrected and retrained on together")
    parser.add_argument(
        "--reviewed-margin",
        type=float,
        metavar="METRES",
        help="train only inside the training plot's crowns grown by this margin (its reviewed areas)",
    )
    parser.add_argument(
        "--one-view",
        action="store_true",
        help="detect once per patch at the one-view threshold (as the slow retraining test scores), not as the checkpoint ships",
    )
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="change one TrainingSettings field")
    args = parser.parse_args()

    base = load_checkpoint(args.model)
    settings = with_learning_rate_for(settings_from(args.set), base.metadata)
    print(f"settings: {settings}")
    if args.reviewed_margin is not None:
        print(f"reviewed areas: each training plot's crowns grown by {args.reviewed_margin} m")
    print(f"base threshold {threshold_of(base, args.one_view)}; F1 after at thresholds {SWEEP}")
    print(
        f"{'train on':15} {'crowns':>6} {'scored':>6} {'F1 before':>9} {'F1 after':>9} {'change':>7} {'offered':>8} {'min':>5}  "
        f"{'check: new/base':18} corrected plot itself  sweep"
    )
    with tempfile.TemporaryDirectory() as scratch:
        if args.known_sites:
            measure = known_sites
        elif args.new_sites:
            measure = new_sites
        elif args.sample_plots:
            measure = yellowstone_sample_plots
        else:
            measure = one_site
        changes = measure(args, settings, base, Path(scratch))
    retrained_changes, offered_changes = zip(*changes)
    print(f"mean change {np.mean(retrained_changes):+.3f} retrained, {np.mean(offered_changes):+.3f} as offered "
          f"(the base model kept where the check judged the new one worse), over {len(changes)} retrainings")


if __name__ == "__main__":
    main()
