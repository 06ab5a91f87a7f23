"""Score a checkpoint on NEON plots through the engine, as `treecrowns:detect` would run it.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/evaluate_model.py [--model resources/models/....safetensors]
        [--plots validation|all|site:SITE|NAME,NAME] [--resolutions 0.05,0.1,0.2] [--pictures DIR] [--json FILE]

For every plot it runs detection at the checkpoint's own thresholds and scores it with
DeepForest's protocol (IoU > 0.4). ``--resolutions`` resamples each plot to other ground
resolutions first (bilinear, written as temporary GeoTIFFs), to check that the engine's
resampling keeps the model working. Prints one table per resolution, by site.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402
from treecrowns.core.evaluation import evaluate  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, detect  # noqa: E402
from plots import LABELLED_FOLDERS, detectable, read_plots  # noqa: E402

DEFAULT_DATA = ",".join(str(folder) for folder in LABELLED_FOLDERS)  # every labelled folder, comma-separated
DEFAULT_MODEL = REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors"
# Plots without georeference are detected through a GeoTIFF copy that states their pixel size, made once.
PLACED_COPIES = REPO / "output" / "placed-plots"


def plots_by_name(data: Path | str = DEFAULT_DATA) -> dict:
    """The annotated plots of ``data`` (a folder, or folders separated by commas), by file name.

    A plot without georeference comes back with its image path pointing at a copy that states its
    pixel size (model/plots.detectable), so that detection reads it at its real resolution.
    """
    items = {}
    for folder in str(data).split(","):
        for plot in read_plots(Path(folder)):
            path = Path(plot.crowns.image_path)
            if plot.crowns.pixel_size_m is not None:
                copies = placed_copies_of(Path(folder))
                path = copies / f"{plot.name}.tif"
                if not path.exists():
                    detectable(plot, copies)
            items[Path(plot.crowns.image_path).name] = replace(plot.crowns, image_path=str(path))
            SITE_OF[Path(plot.crowns.image_path).name] = plot.site
    return items


def placed_copies_of(folder: Path) -> Path:
    """Where the placed copies of one data folder's plots are kept: its own folder, since other data
    folders (a recoloured copy of one, say) may hold plots of the same names with other pixels."""
    resolved = str(folder.resolve())
    copies = PLACED_COPIES / f"{folder.name}-{hashlib.sha1(resolved.encode()).hexdigest()[:8]}"
    copies.mkdir(parents=True, exist_ok=True)
    return copies


# Plot file name -> NEON site, from plots.csv (names such as 2018_SJER_3_... do not start with it).
SITE_OF: dict[str, str] = {}


def site_of(name: str) -> str:
    return SITE_OF.get(name, name.split("_")[0])


def resampled_copy(path: str, resolution: float, folder: Path) -> tuple[str, float]:
    """The plot resampled to ``resolution`` metres per pixel, and new pixels per old pixel."""
    with rasterio.open(path) as src:
        factor = src.res[0] / resolution
        source_width = src.width
        width, height = max(1, round(src.width * factor)), max(1, round(src.height * factor))
        data = src.read(out_shape=(src.count, height, width), resampling=Resampling.bilinear)
        transform = src.transform * src.transform.scale(src.width / width, src.height / height)
        profile = {**src.profile, "width": width, "height": height, "transform": transform}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
    target = folder / f"{Path(path).stem}_{resolution:g}.tif"
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
    return str(target), width / source_width


def draw(path: str, predicted: np.ndarray, reference: np.ndarray, target: Path) -> None:
    from PIL import Image, ImageDraw

    with rasterio.open(path) as src:
        image = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    picture = Image.fromarray(image)
    pen = ImageDraw.Draw(picture)
    for box in reference:
        pen.rectangle(list(map(float, box)), outline=(0, 255, 255), width=2)
    for box in predicted:
        pen.rectangle(list(map(float, box)), outline=(255, 40, 40), width=1)
    picture.save(target)


def plot_names(model, items: dict, choice: str) -> list[str]:
    """The plots ``--plots`` names: 'validation', 'all', 'site:SITE' or comma-separated names."""
    if choice == "validation":
        names = model.metadata.provenance["training_data"]["validation_plots"]
    elif choice == "all":
        names = sorted(items)
    elif choice.startswith("site:"):
        names = sorted(n for n in items if site_of(n) == choice[len("site:"):])
    else:
        names = choice.split(",")
    missing = [n for n in names if n not in items]
    if not names or missing:
        raise SystemExit(f"no such plot(s) {missing or choice!r} in the annotations")
    return names


def score_plots(
    model, items: dict, names: list[str], resolution: float, scratch: Path, pictures: Path | None = None,
    settings: DetectionSettings = DetectionSettings(),
) -> dict:
    """Figures by site and for all plots (key "all"), detecting at ``resolution`` m per pixel."""
    predicted, reference, sites = {}, {}, defaultdict(list)
    for name in names:
        item = items[name]
        path, scale = item.image_path, 1.0
        if abs(resolution - 0.1) > 1e-9:
            path, scale = resampled_copy(item.image_path, resolution, scratch)
        found = detect(path, model, settings)
        predicted[name] = found.pixel_boxes / scale
        reference[name] = item.boxes
        sites[site_of(name)].append(name)
        if pictures is not None:
            pictures.mkdir(parents=True, exist_ok=True)
            draw(item.image_path, predicted[name], item.boxes, pictures / f"{Path(name).stem}.png")
    table = {}
    for site, plots in sorted(sites.items()):
        table[site] = {**evaluate({n: predicted[n] for n in plots}, {n: reference[n] for n in plots}).as_dict(), "plots": len(plots)}
    table["all"] = {**evaluate(predicted, reference).as_dict(), "plots": len(names)}
    return table


def print_table(title: str, table: dict) -> None:
    print(f"\n{title}")
    print(f"{'site':6} {'plots':>5} {'crowns':>6} {'P':>6} {'R':>6} {'F1':>6}")
    for site, row in table.items():
        crowns = row["true_positives"] + row["missed"]
        print(f"{site:6} {row['plots']:5d} {crowns:6d} {row['precision']:6.3f} {row['recall']:6.3f} {row['f1']:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", default=DEFAULT_DATA, help="data folders, comma-separated (default: every labelled folder)")
    parser.add_argument("--plots", default="validation", help="'validation' (the checkpoint's held-out plots), 'all', 'site:HARV' (every plot of a site), or names")
    parser.add_argument("--resolutions", default="0.1", help="comma-separated metres per pixel")
    parser.add_argument("--pictures", type=Path, help="folder for PNGs of predictions (red) and reference crowns (cyan)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    model = load_checkpoint(args.model)
    items = plots_by_name(args.data)
    names = plot_names(model, items, args.plots)
    views = f"{model.metadata.views_description()}, fused" if model.metadata.test_time_augmentation else "one view"
    figures: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        for resolution in (float(r) for r in args.resolutions.split(",")):
            pictures = args.pictures if abs(resolution - 0.1) < 1e-9 else None
            table = score_plots(model, items, names, resolution, Path(scratch), pictures)
            figures[f"{resolution:g}"] = table
            print_table(f"ground resolution {resolution:g} m ({len(names)} plots, {views}, score >= {model.metadata.score_threshold})", table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
