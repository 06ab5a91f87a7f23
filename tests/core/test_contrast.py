"""Contrast normalisation: raw and equalised imagery look alike to a checkpoint that asks for it."""

import numpy as np
import pytest
import rasterio

from synthetic import BrightSquareDetector, oracle_model, write_raster
from treecrowns.core.checkpoint import CheckpointError, ModelMetadata, new_model, read_metadata, save_checkpoint
from treecrowns.core.contrast import Contrast, equalise_luminance, normalise_contrast
from treecrowns.core.model import lite_architecture
from treecrowns.core.prediction import DetectionSettings, detect


def narrow_plot(seed: int = 0) -> np.ndarray:
    """A dull (3, 60, 80) image, as a raw flight looks: grey levels 90-140, the greens a little greener."""
    rng = np.random.default_rng(seed)
    grey = rng.uniform(90, 140, size=(60, 80))
    return np.stack([grey - 5, grey + 10, grey - 15]).astype(np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    return 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]


def test_equalising_spreads_a_dull_image_over_the_whole_range_and_keeps_its_colours():
    image = narrow_plot()
    equalised = equalise_luminance(image)
    assert luminance(image).max() - luminance(image).min() < 60
    assert luminance(equalised).min() < 5 and luminance(equalised).max() > 250
    # Each pixel keeps how much greener and less blue it is than its brightness (unless clipped).
    inside = (equalised > 0).all(axis=0) & (equalised < 255).all(axis=0)
    assert np.allclose((equalised[1] - equalised[0])[inside], (image[1] - image[0])[inside], atol=1e-3)
    # The order of brightness is kept: a brighter pixel is never made darker than a dimmer one.
    before, after = luminance(image).ravel(), luminance(equalised).ravel()
    order = np.argsort(before, kind="stable")
    assert (np.diff(after[order]) >= -1.0).all()


def test_brighter_or_duller_copies_of_an_image_equalise_to_nearly_the_same():
    """Equalising removes what differs between flights: brightness entirely, most of a contrast change.

    Colour differences are kept as they are, so a contrast change, which also scales them,
    leaves some difference (measured: 13.5 -> 3.9 grey levels for 0.7x, 28.7 -> 14.9 for 2.5x).
    """
    image = narrow_plot()
    brighter = np.clip(image + 40, 0, 255)
    assert np.allclose(equalise_luminance(image), equalise_luminance(brighter), atol=1e-3)
    for gain, offset in ((0.7, 20.0), (2.5, -190.0)):
        changed = np.clip(image * gain + offset, 0, 255)
        before = np.abs(image - changed).mean()
        after = np.abs(equalise_luminance(image) - equalise_luminance(changed)).mean()
        assert after < before / 1.9, (gain, before, after)


def test_black_padding_takes_no_part_and_stays_black():
    image = narrow_plot()
    padded = np.zeros((3, 100, 100), dtype=np.float32)
    padded[:, :60, :80] = image
    equalised = equalise_luminance(padded)
    assert (equalised[:, 60:, :] == 0).all() and (equalised[:, :, 80:] == 0).all()
    assert np.allclose(equalised[:, :60, :80], equalise_luminance(image))
    assert (equalise_luminance(np.zeros((3, 8, 8))) == 0).all()


def test_none_leaves_the_pixels_alone_and_unknown_names_are_refused():
    image = narrow_plot()
    assert normalise_contrast(image, Contrast.NONE) is image
    with pytest.raises(ValueError, match="update the plugin"):
        normalise_contrast(image, "sepia")


def test_a_checkpoint_records_its_normalisation_and_old_ones_have_none(tmp_path):
    arguments = dict(architecture=lite_architecture(trunk="compact"), labels=("Tree",), ground_resolution_m=0.2, patch_size=64)
    save_checkpoint(new_model(ModelMetadata(**arguments, contrast="equalised-luminance")), tmp_path / "new.safetensors")
    save_checkpoint(new_model(ModelMetadata(**arguments)), tmp_path / "old.safetensors")
    assert read_metadata(tmp_path / "new.safetensors").contrast == "equalised-luminance"
    assert read_metadata(tmp_path / "old.safetensors").contrast == "none"
    with pytest.raises(CheckpointError, match="unknown contrast normalisation 'sepia'"):
        ModelMetadata(**arguments, contrast="sepia")


class RecordingDetector(BrightSquareDetector):
    """The oracle network, keeping every image it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def __call__(self, images):
        self.seen.extend(image.clone() for image in images)
        return super().__call__(images)


def test_detection_normalises_every_window_when_the_checkpoint_asks(tmp_path):
    raster = write_raster(tmp_path / "dull.tif", 200, 150, crowns=[(20, 20, 30), (100, 60, 30)])
    with rasterio.open(raster, "r+") as dataset:  # squeezed into a dull band of grey levels, 70 to 142
        dataset.write((dataset.read().astype(float) * 0.4 + 62).astype("uint8"))
    seen = {}
    for contrast in Contrast:
        model = oracle_model()
        model.network = RecordingDetector()
        object.__setattr__(model.metadata, "contrast", contrast.value)
        detect(str(raster), model, DetectionSettings(device="cpu"))
        seen[contrast] = model.network.seen
    assert len(seen[Contrast.NONE]) == len(seen[Contrast.EQUALISED_LUMINANCE]) > 1
    for plain, normalised in zip(seen[Contrast.NONE], seen[Contrast.EQUALISED_LUMINANCE]):
        assert plain.max() < 0.6 and plain[:, plain.amax(0) > 0].min() > 0.25
        assert np.allclose(normalised.numpy() * 255, equalise_luminance(plain.numpy() * 255), atol=0.01)
        assert normalised.max() > 0.95
