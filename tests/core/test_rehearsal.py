import numpy as np
from shapely.geometry import box as rectangle

from synthetic import write_raster
from treecrowns.core.annotations import ImageAnnotations
from treecrowns.core.rehearsal import unreviewed_rehearsal

# A 0.1 m raster and a model working at 0.2 m on 64 px patches: one window is 128 raster pixels.
SIDE = 128


def crowns_on_a_grid(width: int, height: int, step: int = 40, side: int = 12) -> list[tuple[int, int, int]]:
    return [(col, row, side) for row in range(10, height - side, step) for col in range(10, width - side, step)]


def annotated(tmp_path, width, height, crowns, regions) -> ImageAnnotations:
    path = write_raster(tmp_path / "ortho.tif", width, height, crowns)
    boxes = np.array([[c, r, c + s, r + s] for c, r, s in crowns], dtype=float).reshape(-1, 4)
    return ImageAnnotations(str(path), boxes, ("Tree",) * len(crowns), regions=regions)


def test_the_unreviewed_windows_nearest_the_reviewed_area_are_rehearsed_with_their_crowns(tmp_path):
    crowns = crowns_on_a_grid(768, 768)
    reviewed = rectangle(256, 256, 384, 384)
    item = annotated(tmp_path, 768, 768, crowns, (reviewed,))
    (rehearsal,) = unreviewed_rehearsal([item], ground_resolution_m=0.2, patch_size=64)
    windows = [w.bounds for w in rehearsal.regions]
    # Four times the reviewed area, nearest first: the four windows sharing an edge with it.
    assert sorted(windows) == [(128, 256, 256, 384), (256, 128, 384, 256), (256, 384, 384, 512), (384, 256, 512, 384)]
    assert not any(w.intersection(reviewed).area for w in rehearsal.regions)
    centres = (rehearsal.boxes[:, :2] + rehearsal.boxes[:, 2:]) / 2
    inside_reviewed = (centres >= 256).all(axis=1) & (centres <= 384).all(axis=1)
    assert len(rehearsal.boxes) and not inside_reviewed.any(), "the corrected crowns are not rehearsed"
    assert len(rehearsal.labels) == len(rehearsal.boxes)


def test_windows_without_crowns_and_rasters_without_reviewed_areas_give_nothing(tmp_path):
    left_half = [c for c in crowns_on_a_grid(768, 256) if c[0] < 200]
    item = annotated(tmp_path, 768, 256, left_half, (rectangle(0, 0, 128, 128),))
    (rehearsal,) = unreviewed_rehearsal([item], ground_resolution_m=0.2, patch_size=64)
    assert all(w.bounds[2] <= 256 for w in rehearsal.regions), "where no crown was found, detection may never have run"
    whole = annotated(tmp_path, 768, 256, left_half, None)
    assert unreviewed_rehearsal([whole], ground_resolution_m=0.2, patch_size=64) == []
