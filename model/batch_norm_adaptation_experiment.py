"""Does re-estimating the trunk's BatchNorm statistics on the imagery being detected help on an unseen site?

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/batch_norm_adaptation_experiment.py [--sites HARV,OSBS,SJER,TEAK] \
        --folders output/leave-one-site-out,output/loso-60-epochs-seed-1 [--shares 0.5,1]

A site the model has never seen has other colours, light and shadows, and the trunk's
BatchNorm layers normalise with statistics gathered on the training sites. Replacing them
with the statistics of the raster being detected needs no labels and no retraining
("AdaBN", Li et al. 2016), so the engine could do it on every raster. This measures it
on the leave-one-out checkpoints in each folder (``without-SITE.safetensors``):

* per plot, at each ``--shares`` value: each plot's own statistics (the plot read at the
  model's ground resolution, as the engine reads it), mixed with the training statistics
  (share 1: the plot's alone, 0.5: half and half), which is what the engine could do per raster;
* per site: the statistics of all the left-out site's plots together (centre crops of a
  common size), the most the site's imagery can tell without labels.

The held-out plots of the training sites are detected the same way (each plot with its own
statistics) to choose the score threshold, as training chooses it; then the left-out site is
scored at that threshold. Detection is the checkpoint's: four turned views at its view scales.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))
sys.path.insert(0, str(REPO / "model"))

from ensemble_experiment import Found, calibrated, f1_at, found_by  # noqa: E402
from evaluate_model import DEFAULT_DATA, plots_by_name  # noqa: E402
from leave_one_site_out import checkpoint_for, finished  # noqa: E402
from treecrowns.core.checkpoint import LoadedModel, load_checkpoint  # noqa: E402
from treecrowns.core.raster import RasterReader, read_full  # noqa: E402

Statistics = list[tuple[torch.Tensor, torch.Tensor]]  # (mean, variance) per BatchNorm layer


def batch_norm_layers(network: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def current_statistics(network: torch.nn.Module) -> Statistics:
    return [(layer.running_mean.clone(), layer.running_var.clone()) for layer in batch_norm_layers(network)]


def set_statistics(network: torch.nn.Module, training: Statistics, imagery: Statistics, share: float) -> None:
    """Each BatchNorm layer normalises with ``share`` of the imagery's statistics, the rest the training's."""
    for layer, (train_mean, train_var), (mean, var) in zip(batch_norm_layers(network), training, imagery):
        layer.running_mean.copy_((1 - share) * train_mean + share * mean)
        layer.running_var.copy_((1 - share) * train_var + share * var)


def statistics_of(model: LoadedModel, images: list[np.ndarray]) -> Statistics:
    """BatchNorm statistics of (3, H, W) 0-255 images of one size, every layer fed the layers before it normalised by them."""
    network = model.network
    layers = batch_norm_layers(network)
    saved = current_statistics(network)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a plain average over what is fed, here a single batch
        layer.train()
    try:
        batch = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0)
        mean = torch.tensor(network.transform.image_mean)[:, None, None]
        std = torch.tensor(network.transform.image_std)[:, None, None]
        with torch.no_grad():
            network.backbone((batch - mean) / std)
        found = current_statistics(network)
    finally:
        set_statistics(network, saved, saved, 0.0)
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
            layer.eval()
    return found


def plot_image(model: LoadedModel, path: str) -> np.ndarray:
    """The plot as the engine reads it: resampled to the model's ground resolution."""
    with RasterReader(path) as reader:
        resolution = reader.info.ground_resolution_m[0]
    image, _, _ = read_full(path, scale=resolution / model.metadata.ground_resolution_m)
    return image


def centre_crops(images: list[np.ndarray]) -> list[np.ndarray]:
    height = min(i.shape[1] for i in images)
    width = min(i.shape[2] for i in images)
    crops = []
    for image in images:
        top, left = (image.shape[1] - height) // 2, (image.shape[2] - width) // 2
        crops.append(image[:, top:top + height, left:left + width])
    return crops


def found_adapted(model: LoadedModel, items: dict, statistics: dict[str, Statistics], share: float) -> Found:
    """Crowns on each plot named in ``statistics``, found with ``share`` of the statistics given for it."""
    training = current_statistics(model.network)
    found: Found = {}
    try:
        for name, imagery in statistics.items():
            set_statistics(model.network, training, imagery, share)
            found.update(found_by(model, items, [name]))
    finally:
        set_statistics(model.network, training, training, 0.0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="HARV,OSBS,SJER,TEAK")
    parser.add_argument("--folders", required=True, help="comma-separated folders of leave-one-out checkpoints")
    parser.add_argument("--shares", default="0.5,1", help="shares of each plot's own statistics to try")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = plots_by_name(args.data)
    shares = [float(s) for s in args.shares.split(",")]

    headers = ["training statistics", *(f"per plot, share {s:g}" for s in shares), "per site, share 1"]
    print("| checkpoint | left-out site | " + " | ".join(headers) + " |")
    print("| --- " * (len(headers) + 2) + "|")
    columns: list[list[float]] = [[] for _ in headers]
    for folder in (Path(f) for f in args.folders.split(",")):
        for site in args.sites.split(","):
            if not finished(folder, site):
                raise SystemExit(f"{checkpoint_for(folder, site)} is missing or unfinished")
            model = load_checkpoint(checkpoint_for(folder, site))
            validation = model.metadata.provenance["training_data"]["validation_plots"]
            plots = sorted(n for n in items if n.split("_")[0] == site)
            images = {name: plot_image(model, items[name].image_path) for name in [*validation, *plots]}
            own = {name: statistics_of(model, [image]) for name, image in images.items()}
            site_statistics = statistics_of(model, centre_crops([images[name] for name in plots]))
            # The training sites' held-out plots choose each share's threshold, always with their own statistics.
            thresholds = {share: calibrated(found_adapted(model, items, {n: own[n] for n in validation}, share), items)
                          for share in {0.0, *shares, 1.0}}
            ways = [(0.0, own), *((share, own) for share in shares), (1.0, dict.fromkeys(plots, site_statistics))]
            cells = []
            for column, (share, statistics) in zip(columns, ways):
                f1 = f1_at(found_adapted(model, items, {n: statistics[n] for n in plots}, share), items, thresholds[share])
                column.append(f1)
                cells.append(f"{f1:.3f} ({thresholds[share]:g})")
            print(f"| {folder.name} | {site} | " + " | ".join(cells) + " |", flush=True)
    print("| mean | | " + " | ".join(f"{np.mean(c):.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
