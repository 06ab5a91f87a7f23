"""Pseudo-labels for self-training: a teacher checkpoint's confident crowns on unlabelled plots.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/pseudo_label.py --model resources/models/treecrowns-neon-lite.safetensors \
        --output output/pseudo-labels/bundled.csv [--threshold 0.3] [--without-site SJER] [--pictures DIR]

Every GeoTIFF in ../shared/data/neon/unlabeled (or in each ``--images`` folder; give it twice to
add ../shared/data/neon-more/unlabeled) is detected through the engine, as `treecrowns:detect` would run it, and the crowns scoring at least ``--threshold``
are written as a DeepForest CSV (pixel boxes, absolute image paths). The threshold is higher
than the teacher's own: a wrong pseudo-crown teaches a wrong tree, while a missed one only
teaches background. Plots where the teacher is sure of nothing are left out rather than
written as treeless. ``--without-site`` skips the plots of one site, or of several
comma-separated, so that a student never sees its left-out sites, not even unlabelled.

The CSV is then extra training data: ``train_bundled_model.py --pseudo-labels CSV``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from evaluate_model import draw  # noqa: E402
from train_bundled_model import site_of  # noqa: E402
from treecrowns.core.annotations import ImageAnnotations, write_deepforest_csv  # noqa: E402
from treecrowns.core.checkpoint import LoadedModel, load_checkpoint  # noqa: E402
from treecrowns.core.errors import TreecrownsError  # noqa: E402
from treecrowns.core.prediction import DetectionSettings, detect  # noqa: E402

DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "neon" / "unlabeled"


def pseudo_labels(teacher: LoadedModel, images: list[Path], threshold: float) -> list[ImageAnnotations]:
    """The teacher's crowns scoring at least ``threshold`` on each image that has any."""
    settings = DetectionSettings(score_threshold=threshold)
    found = []
    for path in images:
        detections = detect(str(path), teacher, settings)
        if len(detections.pixel_boxes):
            found.append(ImageAnnotations(str(path.resolve()), np.asarray(detections.pixel_boxes, dtype=float), detections.labels))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the teacher checkpoint")
    parser.add_argument("--images", type=Path, action="append",
                        help=f"folder of unlabelled GeoTIFFs; repeat for several (default {DEFAULT_IMAGES})")
    parser.add_argument("--output", type=Path, required=True, help="DeepForest CSV to write")
    parser.add_argument("--threshold", type=float, default=0.3, help="lowest score kept as a pseudo-crown")
    parser.add_argument("--without-site", default="", help="skip these sites' plots, comma-separated (names start with SITE_)")
    parser.add_argument("--pictures", type=Path, help="folder for PNGs of the pseudo-crowns (red)")
    args = parser.parse_args()
    if not 0 < args.threshold < 1:
        raise SystemExit(f"--threshold must be between 0 and 1, got {args.threshold}")

    folders = args.images or [DEFAULT_IMAGES]
    left_out = {site for site in args.without_site.split(",") if site}
    images = sorted(p for folder in folders for p in folder.glob("*.tif") if site_of(p) not in left_out)
    if not images:
        where = ", ".join(str(folder) for folder in folders)
        raise SystemExit(f"no GeoTIFF to label in {where}" + (f" outside sites {args.without_site}" if left_out else ""))
    try:
        teacher = load_checkpoint(args.model)
        labelled = pseudo_labels(teacher, images, args.threshold)
    except TreecrownsError as exc:
        raise SystemExit(str(exc)) from exc
    if not labelled:
        raise SystemExit(f"the teacher found no crown scoring {args.threshold} or more; lower --threshold")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_deepforest_csv(labelled, args.output)
    if args.pictures is not None:
        args.pictures.mkdir(parents=True, exist_ok=True)
        for item in labelled:
            draw(item.image_path, item.boxes, np.zeros((0, 4)), args.pictures / f"{Path(item.image_path).stem}.png")
    crowns = sum(len(item.labels) for item in labelled)
    print(f"{crowns} pseudo-crowns on {len(labelled)} of {len(images)} plots (score >= {args.threshold}) -> {args.output}")


if __name__ == "__main__":
    main()
