"""Score a checkpoint on the deepforest package's public sample plots, a check by a third party.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/score_sample_plots.py [--model CHECKPOINT] [--json FILE] [--pictures DIR]

The plots (OSBS_029, SOAP_061 and two Yellowstone crops, hand-drawn crowns by the DeepForest
authors) come from the deepforest wheel that setup unpacks into build/samples/. No checkpoint
is trained or tuned on them. Each is detected through the engine at the checkpoint's own
thresholds and views, as `treecrowns:detect` runs it; the PNG plots, which carry no
georeference, are detected on a 10 cm GeoTIFF copy (their NEON resolution). Scored with
DeepForest's protocol (IoU > 0.4), per plot and over all plots. ``--pictures`` draws each plot
with found (green), false (orange) and missed (magenta) crowns, as JPEGs at most 800 px wide:
the model card's pictures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402
from treecrowns.core.evaluation import ImageMatches, evaluate  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, detect  # noqa: E402
from treecrowns.core.sample_data import SampleDataMissingError, georeferenced_copy, sample_plots  # noqa: E402

DEFAULT_MODEL = REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors"
FOUND, FALSE, MISSED = (26, 150, 65), (253, 141, 60), (208, 28, 139)  # the colours of resources/styles/evaluation.qml
PICTURE_WIDTH = 800


def draw(image_path: Path, predicted: np.ndarray, reference: np.ndarray, matches: ImageMatches, target: Path) -> None:
    """The plot with its found, false and missed crowns, scaled to at most ``PICTURE_WIDTH`` px wide."""
    from PIL import Image, ImageDraw

    picture = Image.open(image_path).convert("RGB")
    scale = min(1.0, PICTURE_WIDTH / picture.width)
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)
    pen = ImageDraw.Draw(picture)
    width = max(1, round(2 * scale))

    def outline(box: np.ndarray, colour: tuple[int, int, int]) -> None:
        pen.rectangle([float(v) * scale for v in box], outline=colour, width=width)

    for index in matches.missed:
        outline(reference[index], MISSED)
    for index in matches.false_positives:
        outline(predicted[index], FALSE)
    for index, _ in matches.matched_pairs:
        outline(predicted[index], FOUND)
    picture.save(target, quality=85)


def score(model_path: Path, pictures: Path | None) -> dict:
    """Figures per plot and over all plots (key "all")."""
    model = load_checkpoint(model_path)
    predicted, reference, images = {}, {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for plot in sample_plots():
            on_disk = plot if plot.image.suffix == ".tif" else georeferenced_copy(plot, Path(scratch) / f"{plot.name}.tif")
            predicted[plot.name] = detect(str(on_disk.image), model, DetectionSettings()).pixel_boxes
            reference[plot.name] = plot.crowns.boxes
            images[plot.name] = plot.image
    result = evaluate(predicted, reference)
    table = {name: evaluate({name: predicted[name]}, {name: reference[name]}).as_dict() for name in predicted}
    table["all"] = result.as_dict()
    if pictures is not None:
        pictures.mkdir(parents=True, exist_ok=True)
        for name, matches in result.per_image.items():
            draw(images[name], predicted[name], reference[name], matches, pictures / f"{name}.jpg")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--pictures", type=Path, help="folder for a JPEG of each plot's found, false and missed crowns")
    args = parser.parse_args()
    try:
        table = score(args.model, args.pictures)
    except SampleDataMissingError as exc:
        raise SystemExit(str(exc)) from exc
    print(f"{'plot':40} {'crowns':>6} {'found':>5} {'P':>6} {'R':>6} {'F1':>6}")
    for name, row in table.items():
        crowns = row["true_positives"] + row["missed"]
        print(f"{name:40} {crowns:6d} {row['true_positives']:5d} {row['precision']:6.3f} {row['recall']:6.3f} {row['f1']:6.3f}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
