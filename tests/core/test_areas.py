"""Reviewed areas as polygons: which crowns they hold, which pixels, and where they fall on a raster."""

import numpy as np
from shapely.geometry import Polygon, box

from synthetic import ORIGIN, write_raster
from treecrowns.core.areas import area_mask, areas_to_pixels, centres_inside
from treecrowns.core.raster import RasterReader
from treecrowns.core.tiling import Window

L_SHAPE = Polygon([(0, 0), (100, 0), (100, 50), (50, 50), (50, 100), (0, 100)])


def test_crowns_count_when_their_centre_is_inside_the_polygon_not_just_its_bounding_box():
    crowns = np.array([[10, 10, 20, 20], [80, 10, 90, 20], [10, 80, 20, 90], [80, 80, 90, 90], [200, 10, 210, 20]], float)
    assert centres_inside(crowns, [L_SHAPE]).tolist() == [True, True, True, False, False]
    assert centres_inside(crowns, [L_SHAPE, box(150, 0, 250, 50)]).tolist() == [True, True, True, False, True]
    assert centres_inside(crowns, []).tolist() == [False] * 5


def test_area_mask_follows_the_polygon_at_the_output_resolution():
    window = Window(0, 0, 100, 100)
    full = area_mask(L_SHAPE, window, 100, 100)
    assert full.sum() == 7500 and not full[60:, 60:].any() and full[:50].all()
    half = area_mask(L_SHAPE, window, 50, 50)  # read at half the resolution
    assert half.sum() == 1875 and not half[30:, 30:].any()
    assert area_mask(box(0, 0, 100, 100), Window(10, 10, 20, 20), 7, 9).all()


def test_areas_in_map_coordinates_land_on_the_pixels_they_cover(tmp_path):
    path = write_raster(tmp_path / "r.tif", 100, 80)  # 10 cm pixels, top-left corner at ORIGIN
    x0, y0 = ORIGIN
    on_map = Polygon([(x0 + 1, y0 - 1), (x0 + 5, y0 - 1), (x0 + 1, y0 - 5)])  # metres
    off_raster = box(x0 + 50, y0 - 50, x0 + 60, y0 - 40)
    overhanging = box(x0 - 2, y0 - 2, x0 + 2, y0 + 2)
    with RasterReader(path) as reader:
        areas = areas_to_pixels([on_map, off_raster, overhanging], reader.info)
    assert len(areas) == 2
    assert np.allclose(areas[0].bounds, (10, 10, 50, 50)) and np.isclose(areas[0].area, 800)
    assert np.allclose(areas[1].bounds, (0, 0, 20, 20))
