"""The repository carries no copy of the training data's images, raw or rendered.

The data in ../shared is ours to train and measure on, not to redistribute. Every image or
raster the repository holds is compared, by decoded pixels, with every image there: the same
size and mostly the same pixels is a copy; the same picture at any size (a render with boxes
drawn on it, scaled) is caught by comparing 32 x 32 px thumbnails. Measured on 2026-12-01: a
training plot drawn with 30 boxes and scaled to 300 px differs from its source by 6.6-6.8 grey
levels on average; the closest pair of unrelated plots (the package's sample plots against the
260 images in ../shared) by 20.0.
"""

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp", ".jp2"}
THUMBNAIL_PX = 32
SAME_PICTURE_MEAN_DIFFERENCE = 12.0  # grey levels, between 6.8 (renders) and 20.0 (unrelated plots)
SAME_PIXELS_SHARE = 0.5


def repository_images() -> list[Path]:
    """Tracked and new (not ignored) image files of the repository."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    return [REPO / name for name in listed if Path(name).suffix.lower() in IMAGE_SUFFIXES and (REPO / name).exists()]


def read_rgb(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(3, H, W) of the first three bands (the one band thrice for grey images), resized to ``shape`` if given."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # most images carry no georeference
        with rasterio.open(path) as image:
            bands = [1, 2, 3] if image.count >= 3 else [1, 1, 1]
            if shape is None:
                return image.read(bands)
            return image.read(bands, out_shape=(3, *shape), resampling=Resampling.average).astype(float)


def size_of(path: Path) -> tuple[int, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as image:
            return image.height, image.width


@pytest.mark.needs_training_data
def test_no_image_in_the_repository_is_a_copy_of_the_training_data():
    shared = sorted(p for p in SHARED_DATA.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    assert shared, f"no image found in {SHARED_DATA}"
    shared_sizes = {path: size_of(path) for path in shared}
    shared_thumbnails = {path: read_rgb(path, (THUMBNAIL_PX, THUMBNAIL_PX)) for path in shared}
    copies = []
    for mine in repository_images():
        height, width = size_of(mine)
        thumbnail = read_rgb(mine, (THUMBNAIL_PX, THUMBNAIL_PX))
        pixels = None
        for theirs, (their_height, their_width) in shared_sizes.items():
            if (their_height, their_width) == (height, width):
                pixels = read_rgb(mine) if pixels is None else pixels
                if (pixels == read_rgb(theirs)).all(axis=0).mean() >= SAME_PIXELS_SHARE:
                    copies.append(f"{mine.relative_to(REPO)} has the pixels of {theirs}")
                    continue
            same_aspect = abs(height / width - their_height / their_width) < 0.05 * their_height / their_width
            if same_aspect and np.abs(thumbnail - shared_thumbnails[theirs]).mean() < SAME_PICTURE_MEAN_DIFFERENCE:
                copies.append(f"{mine.relative_to(REPO)} shows the same picture as {theirs}")
    assert not copies, "the repository may not carry the training data's images:\n" + "\n".join(copies)


def test_a_render_of_an_image_counts_as_a_copy_and_another_plot_does_not(osbs_plot, soap_plot, tmp_path):
    """The comparison itself, on the public sample plots: OSBS_029 drawn with boxes and scaled is
    the same picture; SOAP_061, another NEON plot, is not."""
    from PIL import Image, ImageDraw

    render = Image.open(osbs_plot.image).convert("RGB")
    pen = ImageDraw.Draw(render)
    for box in osbs_plot.crowns.boxes:
        pen.rectangle(list(map(float, box)), outline=(255, 40, 40), width=2)
    render.resize((300, 300)).save(tmp_path / "render.jpg", quality=85)

    def difference(a: Path, b: Path) -> float:
        return float(np.abs(read_rgb(a, (THUMBNAIL_PX,) * 2) - read_rgb(b, (THUMBNAIL_PX,) * 2)).mean())

    assert difference(tmp_path / "render.jpg", osbs_plot.image) < SAME_PICTURE_MEAN_DIFFERENCE
    assert difference(soap_plot.image, osbs_plot.image) >= SAME_PICTURE_MEAN_DIFFERENCE
