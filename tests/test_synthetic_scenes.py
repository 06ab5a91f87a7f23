"""Synthetic pretraining scenes: reproducible from their seed, with boxes on the drawn crowns."""

import sys
from pathlib import Path

import numpy as np
import rasterio

from treecrowns.core.annotations import read_deepforest_csv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))

from make_synthetic_crowns import RESOLUTION, SIZE, draw_scene, make_scenes  # noqa: E402


def test_scenes_are_georeferenced_tiles_that_a_seed_reproduces(tmp_path):
    first = make_scenes(3, tmp_path / "a", seed=7)
    again = make_scenes(3, tmp_path / "b", seed=7)

    assert (tmp_path / "a" / "annotations.csv").read_bytes() == (tmp_path / "b" / "annotations.csv").read_bytes()
    read_back = read_deepforest_csv(tmp_path / "a" / "annotations.csv")
    assert [len(item.labels) for item in read_back] == [len(item.labels) for item in first] == [len(i.labels) for i in again]
    with rasterio.open(read_back[0].image_path) as src:
        assert (src.width, src.height, src.count, src.res) == (SIZE, SIZE, 3, (RESOLUTION, RESOLUTION))
        assert src.crs is not None
    for item in read_back:
        assert item.boxes.min() >= 0 and item.boxes.max() <= SIZE


def test_boxes_hold_foliage_and_the_ground_between_them_does_not():
    inside, outside = [], []
    for index in range(12):
        image, boxes = draw_scene(np.random.default_rng([0, index]))
        rgb = image.astype(float)
        greenness = rgb[1] / (rgb.sum(axis=0) + 1)
        covered = np.zeros((SIZE, SIZE), dtype=bool)
        for x0, y0, x1, y1 in boxes.astype(int):
            covered[y0:y1, x0:x1] = True
        if covered.all() or not covered.any():
            continue
        inside.append(greenness[covered].mean())
        outside.append(greenness[~covered].mean())
    assert len(inside) >= 6
    # Foliage is greener than the scene's ground in most scenes, so the boxes sit on the crowns.
    assert np.mean(np.array(inside) > np.array(outside)) >= 0.75
