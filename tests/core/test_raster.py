import warnings

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import Affine

from synthetic import write_raster
from treecrowns.core.errors import RasterError
from treecrowns.core.raster import RasterReader
from treecrowns.core.tiling import Window

CROWN = [(10, 10, 20)]


def read_all(path, **kwargs):
    with RasterReader(path, **kwargs) as reader:
        info = reader.info
        image, valid = reader.read(Window(0, 0, info.width, info.height), info.width, info.height)
    return image, valid, info


def test_uint8_rgb_is_read_unchanged(tmp_path):
    image, valid, info = read_all(write_raster(tmp_path / "a.tif", 50, 40, CROWN))
    assert image.shape == (3, 40, 50) and valid.all()
    assert tuple(image[:, 15, 15]) == (90, 200, 80)
    assert info.ground_resolution_m == pytest.approx((0.1, 0.1))


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_other_dtypes_are_scaled_to_the_8_bit_range(tmp_path, dtype):
    image, _valid, _info = read_all(write_raster(tmp_path / "a.tif", 50, 40, CROWN, dtype=dtype))
    assert image.min() >= 0 and image.max() <= 255
    crown, ground = image[1, 15, 15], image[1, 35, 45]
    assert crown > 150 and ground < 100, "the crown must stay much brighter than the ground after scaling"


def test_alpha_band_masks_pixels_and_is_not_used_as_colour(tmp_path):
    alpha = np.full((40, 50), 255)
    alpha[:, :25] = 0
    image, valid, info = read_all(write_raster(tmp_path / "a.tif", 50, 40, CROWN, alpha=alpha))
    assert info.bands == (1, 2, 3)
    assert not valid[:, :25].any() and valid[:, 25:].all()
    assert (image[:, :, :25] == 0).all()


def test_nodata_pixels_are_masked(tmp_path):
    mask = np.zeros((40, 50), dtype=bool)
    mask[30:, :] = True
    _image, valid, _info = read_all(write_raster(tmp_path / "a.tif", 50, 40, CROWN, nodata=0, nodata_mask=mask))
    assert not valid[30:].any() and valid[:30].all()


def test_band_choice_on_a_multiband_raster(tmp_path):
    path = write_raster(tmp_path / "a.tif", 50, 40, CROWN, extra_bands=2)
    image, _valid, info = read_all(path, bands=(2, 2, 2))
    assert info.bands == (2, 2, 2)
    assert (image[0] == image[1]).all()
    with pytest.raises(RasterError, match="do not exist"):
        read_all(path, bands=(1, 2, 9))


def test_raster_without_georeferencing_is_read_in_pixels(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_raster(tmp_path / "a.tif", 50, 40, CROWN, crs=None)
    _image, _valid, info = read_all(path)
    assert not info.georeferenced and info.ground_resolution_m is None


def test_geographic_crs_resolution_is_given_in_metres(tmp_path):
    degrees = 1e-6  # about 11 cm north-south
    transform = Affine(degrees, 0, -72.17, 0, -degrees, 42.54)
    path = write_raster(tmp_path / "a.tif", 50, 40, CROWN, crs=CRS.from_epsg(4326), transform=transform)
    _image, _valid, info = read_all(path)
    res_x, res_y = info.ground_resolution_m
    assert res_y == pytest.approx(0.1106, rel=0.01)
    assert res_x == pytest.approx(0.1113 * np.cos(np.radians(42.54)), rel=0.01)


def test_resampled_read_keeps_geometry(tmp_path):
    path = write_raster(tmp_path / "a.tif", 100, 80, [(20, 20, 40)])
    with RasterReader(path) as reader:
        image, valid = reader.read(Window(0, 0, 100, 80), 50, 40)
    assert image.shape == (3, 40, 50) and valid.all()
    bright = np.argwhere(image[1] > 150)
    assert bright.min(axis=0).tolist() == pytest.approx([10, 10], abs=1)
    assert bright.max(axis=0).tolist() == pytest.approx([29, 29], abs=1)


def test_missing_and_unreadable_rasters_give_clear_errors(tmp_path):
    with pytest.raises(RasterError, match="not found"):
        RasterReader(tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(RasterError, match="cannot read"):
        RasterReader(junk)


def test_single_band_raster_is_refused(tmp_path):
    import rasterio

    path = tmp_path / "grey.tif"
    with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 10, 10), dtype=np.uint8))
    with pytest.raises(RasterError, match="RGB"):
        RasterReader(path)


def test_gdal_keeps_a_few_rows_of_blocks_while_a_raster_is_read_then_its_own_cache_size_again(tmp_path):
    """GDAL's default cache (5 % of memory) would otherwise fill with every block of a whole orthophoto."""
    import rasterio
    from osgeo import gdal

    from treecrowns.core.raster import block_cache_bytes

    path = write_raster(tmp_path / "wide.tif", 2000, 300)
    before = gdal.GetCacheMax()
    with RasterReader(path) as reader:
        with rasterio.open(path) as dataset:
            assert gdal.GetCacheMax() == min(before, block_cache_bytes(dataset)) < before
        with RasterReader(path):
            pass
        assert gdal.GetCacheMax() < before, "a second reader closing does not lift the first one's limit"
        reader.read(Window(0, 0, 100, 100), 100, 100)
    assert gdal.GetCacheMax() == before
