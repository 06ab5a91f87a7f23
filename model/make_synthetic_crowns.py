"""Synthetic aerial scenes of tree crowns with exact boxes, for pretraining the bundled model.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/make_synthetic_crowns.py --count 2000 --output output/synthetic [--seed 0]

Writes COUNT GeoTIFFs (200 x 200 px at 0.2 m, the bundled model's own resolution) and an
annotations.csv in DeepForest's format. Nothing is copied from the NEON plots: every scene is
drawn from random numbers, so a model pretrained on them has seen no real site.

Why: about a thousand hand-drawn crowns from four sites teach a detector what those sites
look like, not what a crown is. The scenes vary what differs between forests (crown size,
spacing from open savanna to closed canopy, broadleaf domes or conifer cones, foliage
colour, ground colour, sun direction and shadow length, haze) so the network has to learn
what stays the same: a lit, textured dome or cone with a shadow on the side away from the sun.

A scene is a ground texture, then every tree's shadow, then the crowns from the shortest to
the tallest (a taller crown hides the one under it). A crown's box is its full outline, as
an annotator would draw it; crowns less than 40 % visible are left unlabelled and those cut
by the edge keep the part inside.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from treecrowns.core.annotations import ImageAnnotations, write_deepforest_csv  # noqa: E402

SIZE = 200  # pixels
RESOLUTION = 0.2  # metres per pixel
MIN_VISIBLE = 0.4

# Base colours (0-1 RGB) the scenes draw around; each scene jitters them.
GROUND_COLOURS = [(0.55, 0.50, 0.38), (0.45, 0.48, 0.30), (0.35, 0.33, 0.28), (0.62, 0.58, 0.50), (0.30, 0.36, 0.22)]
FOLIAGE_COLOURS = [(0.22, 0.35, 0.16), (0.30, 0.42, 0.20), (0.16, 0.26, 0.15), (0.36, 0.42, 0.30), (0.40, 0.42, 0.22)]


@dataclass(frozen=True)
class Tree:
    x: float
    y: float
    radius: float  # pixels
    height: float  # relative: decides who hides whom and the shadow's length
    conifer: bool
    colour: np.ndarray


def smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Noise with features about ``scale`` pixels across, zero mean, unit spread."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=max(0.5, scale / 2), mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-9)


def ground(rng: np.random.Generator) -> np.ndarray:
    base = np.array(GROUND_COLOURS[rng.integers(len(GROUND_COLOURS))]) * rng.uniform(0.8, 1.2, 3)
    texture = 0.08 * smooth_noise(rng, SIZE, 20) + 0.05 * smooth_noise(rng, SIZE, 4) + 0.03 * rng.standard_normal((SIZE, SIZE))
    return np.clip(base[:, None, None] * (1 + texture[None]), 0, 1)


def forest(rng: np.random.Generator) -> list[Tree]:
    """Trees for one scene: a stand type decides how many, how big and what kind."""
    radius_m = rng.uniform(1.2, 6.0)  # typical crown radius of the stand
    cover = rng.choice([rng.uniform(0.05, 0.25), rng.uniform(0.25, 0.6), rng.uniform(0.6, 2.0)])
    mean_radius = radius_m / RESOLUTION
    count = max(1, int(cover * SIZE * SIZE / (math.pi * mean_radius**2)))
    conifer_share = rng.choice([0.0, 1.0, rng.uniform()])
    stand_colour = np.array(FOLIAGE_COLOURS[rng.integers(len(FOLIAGE_COLOURS))])
    trees = []
    for _ in range(min(count, 150)):
        radius = float(np.clip(mean_radius * rng.lognormal(0, 0.3), 4, 45))
        colour = stand_colour * rng.uniform(0.92, 1.08, 3) * rng.uniform(0.8, 1.2)
        if rng.uniform() < 0.04:  # a dead or leafless tree
            colour = np.array([0.45, 0.42, 0.38]) * rng.uniform(0.8, 1.2)
        trees.append(Tree(
            x=rng.uniform(-0.1, 1.1) * SIZE,
            y=rng.uniform(-0.1, 1.1) * SIZE,
            radius=radius,
            height=radius * rng.uniform(1.5, 3.0),
            conifer=bool(rng.uniform() < conifer_share),
            colour=colour,
        ))
    return sorted(trees, key=lambda t: t.height)


def outline(tree: Tree, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ragged: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside mask, 0-1 distance from the centre relative to the edge) of a lumpy crown outline;
    ``ragged`` (fine noise) frays the edge the way twigs and gaps do."""
    dx, dy = xx - tree.x, yy - tree.y
    angle = np.arctan2(dy, dx)
    wobble = np.ones_like(angle)
    for k in range(2, 7):
        wobble += rng.uniform(0, 0.12 if not tree.conifer else 0.06) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    stretch = rng.uniform(0.85, 1.15)
    relative = np.hypot(dx * stretch, dy / stretch) / (tree.radius * wobble) * (1 + 0.08 * ragged)
    return relative < 1, relative


def draw_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(3, SIZE, SIZE) uint8 image and (N, 4) pixel boxes of its visible crowns."""
    image = ground(rng)
    trees = forest(rng)
    sun = rng.uniform(0, 2 * np.pi)
    sun_direction = np.array([math.cos(sun), math.sin(sun)])  # image x, y towards the sun
    shadow_length = rng.uniform(0.2, 0.9)  # shadow offset per unit of tree height
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    owner = np.full((SIZE, SIZE), -1)
    shapes = []
    shade = np.ones((SIZE, SIZE))
    ragged = smooth_noise(rng, SIZE, 1.5)
    for tree in trees:
        mask, relative = outline(tree, rng, yy, xx, ragged)
        shapes.append((mask, relative))
        offset = -sun_direction * tree.height * shadow_length
        shadow = ndimage.shift(mask.astype(float), (offset[1], offset[0]), order=1, mode="constant")
        shade = np.minimum(shade, 1 - rng.uniform(0.45, 0.7) * shadow)
    image = image * shade[None]
    foliage = smooth_noise(rng, SIZE, 2.5)
    clumps = smooth_noise(rng, SIZE, 7)
    for index, (tree, (mask, relative)) in enumerate(zip(trees, shapes)):
        if not mask.any():
            continue
        # Surface height of a dome (broadleaf) or a cone (conifer), and its slope towards the sun.
        r = np.clip(relative, 0, 1)
        surface = 1 - r if tree.conifer else np.sqrt(1 - r**2)
        gy, gx = np.gradient(surface)
        lit = np.clip(0.75 + 6.0 * (gx * sun_direction[0] + gy * sun_direction[1]) * tree.radius / 10, 0.35, 1.3)
        texture = 1 + 0.18 * foliage + (0.12 if not tree.conifer else 0.2) * clumps
        crown = tree.colour[:, None, None] * (lit * texture)[None] * (0.75 + 0.35 * surface)[None]
        image = np.where(mask[None], crown, image)
        owner[mask] = index
    image = ndimage.gaussian_filter(image, sigma=(0, 0.6, 0.6))
    haze = rng.uniform(0, 0.15)
    image = image * (1 - haze) + haze * rng.uniform(0.6, 0.9)
    image = image + rng.normal(0, 0.012, image.shape)
    boxes = []
    for index, (mask, _) in enumerate(shapes):
        full = mask.sum()
        visible = (owner == index).sum()
        if full == 0 or visible < MIN_VISIBLE * full or visible < 12:
            continue
        rows, cols = np.nonzero(mask)
        boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), np.array(boxes, dtype=float).reshape(-1, 4)


def write_scene(path: Path, image: np.ndarray, index: int) -> None:
    """A GeoTIFF at 0.2 m in UTM 18N; scenes sit side by side so none overlaps another."""
    transform = from_origin(500000.0 + index * SIZE * RESOLUTION, 4700000.0, RESOLUTION, RESOLUTION)
    profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": 3, "dtype": "uint8",
               "crs": CRS.from_epsg(32618), "transform": transform}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)


def make_scenes(count: int, folder: Path, seed: int) -> list[ImageAnnotations]:
    """Write ``count`` scenes and their annotations.csv into ``folder``; scene i depends only on (seed, i)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    annotations = []
    for index in range(count):
        image, boxes = draw_scene(np.random.default_rng([seed, index]))
        path = images / f"SYNTH_{index:05d}.tif"
        write_scene(path, image, index)
        if len(boxes):
            annotations.append(ImageAnnotations(f"images/{path.name}", boxes, ("Tree",) * len(boxes)))
    write_deepforest_csv(annotations, folder / "annotations.csv")
    return annotations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=REPO / "output" / "synthetic")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.count < 1:
        raise SystemExit("--count must be at least 1")
    annotations = make_scenes(args.count, args.output, args.seed)
    crowns = sum(len(item.labels) for item in annotations)
    print(f"{args.count} scenes, {crowns} crowns -> {args.output}/annotations.csv")


if __name__ == "__main__":
    main()
