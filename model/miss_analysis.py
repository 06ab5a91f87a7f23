"""Where a checkpoint's misses are: recall by crown size, and F1 at looser IoU thresholds.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/miss_analysis.py [--model resources/models/....safetensors] [--plots validation]
    .venv/bin/python model/miss_analysis.py --leave-one-site-out output/leave-one-site-out [--sites TEAK,HARV]

The first form scores one checkpoint on the plots ``--plots`` names (as in evaluate_model.py).
The second scores every plot of each site with the checkpoint trained without that site
(``without-SITE.safetensors`` in the folder, from model/leave_one_site_out.py).

Detection runs at each checkpoint's defaults, as `treecrowns:detect` runs it. A crown's size is
the square root of its box's area, in metres. For each site the script prints:

- reference crowns by size, and the share found at IoU 0.4 (DeepForest's protocol) and at 0.1
  (roughly in the right place, whatever the box's size);
- predicted crowns by size, and the share that match a reference crown at IoU 0.4;
- F1 at IoU 0.1 to 0.5: if F1 at 0.1 is far above F1 at 0.4, boxes are drawn badly; if not,
  crowns are missed outright.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from evaluate_model import DEFAULT_DATA, plot_names  # noqa: E402
from treecrowns.core.annotations import read_deepforest_csv  # noqa: E402
from treecrowns.core.checkpoint import load_checkpoint  # noqa: E402
from treecrowns.core.boxes import areas  # noqa: E402
from treecrowns.core.evaluation import evaluate  # noqa: E402
from treecrowns.core.prediction import detect  # noqa: E402

SIZE_BINS_M = (0, 2, 3, 4, 6, 8, np.inf)
LOOSE_IOU = 0.1
PROTOCOL_IOU = 0.4
IOU_SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5)
SITES = ("HARV", "OSBS", "SJER", "TEAK")


def crown_sizes_m(boxes: np.ndarray, pixel_size_m: float) -> np.ndarray:
    """Square root of each box's area, in metres."""
    return np.sqrt(areas(np.asarray(boxes, dtype=float).reshape(-1, 4))) * pixel_size_m


def raster_pixel_size_m(path: str) -> float:
    """The pixel size a plot's raster states (placed copies state it for plots without georeference)."""
    with rasterio.open(path) as src:
        return float(src.res[0])


def matched(result, names: list[str], boxes: dict[str, np.ndarray], side: int) -> np.ndarray:
    """Which of ``boxes``, the reference crowns (``side`` 1) or predictions (``side`` 0), ``result`` matched."""
    masks = []
    for name in names:
        mask = np.zeros(len(boxes[name]), dtype=bool)
        mask[result.per_image[name].matched_pairs[:, side]] = True
        masks.append(mask)
    return np.concatenate(masks)


def analyse(model, items: dict, names: list[str]) -> dict:
    """Sizes and matches of every reference and predicted crown on the plots, and F1 by IoU."""
    predicted, reference, pixel_size = {}, {}, {}
    for name in names:
        item = items[name]
        pixel_size[name] = raster_pixel_size_m(item.image_path)
        predicted[name], reference[name] = detect(item.image_path, model).pixel_boxes, item.boxes
    by_iou = {iou: evaluate(predicted, reference, iou_threshold=iou) for iou in IOU_SWEEP}
    return {
        "ref_sizes": np.concatenate([crown_sizes_m(reference[n], pixel_size[n]) for n in names]),
        "found_strict": matched(by_iou[PROTOCOL_IOU], names, reference, 1),
        "found_loose": matched(by_iou[LOOSE_IOU], names, reference, 1),
        "pred_sizes": np.concatenate([crown_sizes_m(predicted[n], pixel_size[n]) for n in names]),
        "pred_good": matched(by_iou[PROTOCOL_IOU], names, predicted, 0),
        "f1_by_iou": {iou: result.f1 for iou, result in by_iou.items()},
    }


def share(mask: np.ndarray) -> str:
    return f"{mask.mean():.2f}" if len(mask) else "  - "


def print_analysis(title: str, result: dict) -> None:
    sizes, pred_sizes = result["ref_sizes"], result["pred_sizes"]
    print(f"\n{title}: {len(sizes)} reference crowns (median {np.median(sizes):.1f} m), "
          f"{len(pred_sizes)} predicted (median {np.median(pred_sizes) if len(pred_sizes) else 0:.1f} m)")
    print("| crown size | reference crowns | found at IoU 0.4 | found at IoU 0.1 | predicted crowns | of those right at IoU 0.4 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for low, high in zip(SIZE_BINS_M[:-1], SIZE_BINS_M[1:]):
        ref = (sizes >= low) & (sizes < high)
        pred = (pred_sizes >= low) & (pred_sizes < high)
        label = f"{low}-{high} m" if np.isfinite(high) else f"{low} m and over"
        print(f"| {label} | {ref.sum()} | {share(result['found_strict'][ref])} | {share(result['found_loose'][ref])} "
              f"| {pred.sum()} | {share(result['pred_good'][pred])} |")
    print("F1 by IoU threshold: " + ", ".join(f"{iou}: {f1:.3f}" for iou, f1 in result["f1_by_iou"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors")
    parser.add_argument("--plots", default="validation", help="validation, all, site:SITE or NAME,NAME (with --model)")
    parser.add_argument("--leave-one-site-out", type=Path, metavar="FOLDER",
                        help="score each site with FOLDER/without-SITE.safetensors instead")
    parser.add_argument("--sites", default=",".join(SITES), help="sites to score with --leave-one-site-out")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    items = {Path(item.image_path).name: item for item in read_deepforest_csv(args.data / "annotations.csv")}
    if args.leave_one_site_out is None:
        model = load_checkpoint(args.model)
        names = plot_names(model, items, args.plots)
        for site in sorted({n.split("_")[0] for n in names}):
            print_analysis(f"{args.model.name} on {site}", analyse(model, items, [n for n in names if n.startswith(site + "_")]))
        return
    for site in args.sites.split(","):
        path = args.leave_one_site_out / f"without-{site}.safetensors"
        if not path.exists():
            raise SystemExit(f"{path} is missing: train it with model/leave_one_site_out.py --train --folder {args.leave_one_site_out}")
        model = load_checkpoint(path)
        print_analysis(f"{path.name} on every {site} plot", analyse(model, items, plot_names(model, items, f"site:{site}")))


if __name__ == "__main__":
    main()
