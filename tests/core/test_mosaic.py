"""A folder of tiles (or a VRT of them) gives the same crowns as the one raster they were cut from."""

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from synthetic import cut_into_tiles, oracle_model, write_raster
from treecrowns.core.errors import RasterError
from treecrowns.core.mosaic import tiles_in, write_mosaic_vrt
from treecrowns.core.prediction import DetectionSettings, detect

# Crowns placed across the tile borders at 150 px (columns) and 100 px (rows), and one inside a tile.
CROWNS = [(135, 20, 30), (20, 85, 30), (140, 90, 24), (200, 150, 20), (60, 30, 20)]


def rounded(boxes):
    return sorted(tuple(round(float(v), 6) for v in box) for box in boxes)


def test_a_folder_of_tiles_gives_the_crowns_of_the_mosaic_once_and_whole(tmp_path):
    mosaic = write_raster(tmp_path / "mosaic.tif", 300, 200, CROWNS)
    folder = cut_into_tiles(mosaic, tmp_path / "tiles", 150, 100)
    assert len(tiles_in(folder)) == 4
    model = oracle_model(patch_size=100)
    whole = detect(str(mosaic), model, DetectionSettings(overlap=0.4))
    tiled = detect(str(folder), model, DetectionSettings(overlap=0.4))
    assert len(whole) == len(CROWNS) == len(tiled)
    assert rounded(tiled.boxes) == rounded(whole.boxes), "crowns across tile borders come out once, whole"
    assert tiled.raster.crs_wkt == whole.raster.crs_wkt and tiled.raster.transform == whole.raster.transform
    vrt = write_mosaic_vrt(tiles_in(folder), tmp_path / "tiles.vrt")
    assert rounded(detect(str(vrt), model, DetectionSettings(overlap=0.4)).boxes) == rounded(whole.boxes)


def test_gaps_between_tiles_are_read_as_black_and_hold_no_crown(tmp_path):
    mosaic = write_raster(tmp_path / "mosaic.tif", 300, 200, CROWNS)
    folder = cut_into_tiles(mosaic, tmp_path / "tiles", 150, 100)
    (folder / "tile_0100_0150.tif").unlink()  # the lower right tile is missing
    vrt = write_mosaic_vrt(tiles_in(folder), tmp_path / "gappy.vrt")
    with rasterio.open(vrt) as dataset:
        assert (dataset.width, dataset.height) == (300, 200)
        assert not dataset.read(window=Window(150, 100, 150, 100)).any()
    found = detect(str(vrt), oracle_model(patch_size=100), DetectionSettings(overlap=0.4))
    assert all(not (b[0] >= 150 and b[1] >= 100) for b in found.pixel_boxes)


def test_tiles_that_do_not_fit_one_grid_are_named(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_raster(folder / "a.tif", 50, 50)
    write_raster(folder / "b.tif", 50, 50, resolution=0.2)
    with pytest.raises(RasterError, match=r"tile .*b\.tif does not match a\.tif.*gdalwarp"):
        detect(str(folder), oracle_model())
    (folder / "b.tif").unlink()
    write_raster(folder / "b.tif", 50, 50, transform=rasterio.transform.Affine(0.1, 0, 732000.05, 0, -0.1, 4713000.0))
    with pytest.raises(RasterError, match="off the pixel grid"):
        detect(str(folder), oracle_model())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RasterError, match="holds no raster tiles"):
        detect(str(empty), oracle_model())


def test_the_mosaic_keeps_the_tiles_nodata(tmp_path):
    mask = np.zeros((100, 150), dtype=bool)
    mask[:, :20] = True
    folder = tmp_path / "tiles"
    folder.mkdir()
    write_raster(folder / "a.tif", 150, 100, nodata=0, nodata_mask=mask)
    with rasterio.open(write_mosaic_vrt(tiles_in(folder), tmp_path / "m.vrt")) as dataset:
        assert dataset.nodata == 0 and not dataset.dataset_mask()[:, :20].any()
