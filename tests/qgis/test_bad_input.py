"""Bad input through treecrowns:detect, train and evaluate: a message that names the problem and what to do,
and no file left behind. One row per case; the bundled model and the OSBS_029 sample plot otherwise.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import processing
import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsProject, QgsVectorLayer
from rasterio.transform import Affine
from rasterio.warp import calculate_default_transform, reproject

from sample_plots import crowns_layer
from synthetic import write_raster
from treecrowns.gis.resources import BUNDLED_MODEL

IS_ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Case:
    """``build(tmp_path, plot)`` returns the algorithm's parameters; ``expect`` the message (None: it must work)."""

    name: str
    algorithm: str
    build: Callable[[Path, object], dict]
    expect: str | None


def detect_input(make_raster: Callable[[Path, object], Path]) -> Callable[[Path, object], dict]:
    return lambda tmp, plot: {"INPUT": str(make_raster(tmp, plot)), "OUTPUT": str(tmp / "out" / "crowns.gpkg")}


def garbage(tmp: Path, _plot) -> Path:
    path = tmp / "garbage.tif"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    return path


def truncated(tmp: Path, plot) -> Path:
    data = Path(plot.image).read_bytes()
    path = tmp / "truncated.tif"
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def one_band(tmp: Path, _plot) -> Path:
    path = tmp / "grey.tif"
    with rasterio.open(path, "w", driver="GTiff", width=50, height=50, count=1, dtype="uint8", crs="EPSG:32618",
                       transform=rasterio.transform.from_origin(0, 50, 1, 1)) as dst:
        dst.write(np.zeros((1, 50, 50), dtype=np.uint8))
    return path


def in_wgs84(tmp: Path, plot) -> Path:
    path = tmp / "wgs84.tif"
    with rasterio.open(plot.image) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        with rasterio.open(path, "w", **{**src.profile, "crs": "EPSG:4326", "transform": transform, "width": width,
                                          "height": height}) as dst:
            for band in (1, 2, 3):
                reproject(rasterio.band(src, band), rasterio.band(dst, band))
    return path


def checkpoint_variant(tmp: Path, name: str, change) -> Path:
    """A copy of the bundled checkpoint with its tensors or its metadata changed by ``change``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(BUNDLED_MODEL), "pt") as source:
        header = dict(source.metadata())
        tensors = {key: source.get_tensor(key) for key in source.keys()}
    change(tensors, header)
    path = tmp / name
    save_file(tensors, str(path), metadata=header)
    return path


def wrong_shapes(tensors, header) -> None:
    key = next(k for k in tensors if k.endswith("weight") and tensors[k].ndim == 4)
    tensors[key] = tensors[key][:, :1].clone()


def newer_format(tensors, header) -> None:
    key = next(iter(header))
    metadata = json.loads(header[key])
    metadata["format_version"] = 99
    header[key] = json.dumps(metadata)


class RunsCode:
    """A pickle that would run a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def code_running_pickle(tmp: Path) -> Path:
    path = tmp / "model.pt"
    path.write_bytes(pickle.dumps({"state_dict": RunsCode(tmp / "ran")}))
    return path


def model_case(make_model: Callable[[Path], Path]) -> Callable[[Path, object], dict]:
    return lambda tmp, plot: {"INPUT": str(plot.image), "MODEL": str(make_model(tmp)), "OUTPUT": str(tmp / "out" / "c.gpkg")}


@contextmanager
def mounted(folder: Path, options: str):
    """A small tmpfs at ``folder`` (root only): a read-only or nearly full file system for real."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def read_only_output(tmp: Path, plot) -> dict:
    return {"INPUT": str(plot.image), "OUTPUT": str(tmp / "out" / "crowns.gpkg")}


def output_open_as_layer(tmp: Path, plot) -> dict:
    existing = crowns_layer([plot], tmp / "out" / "crowns.gpkg")
    layer = QgsVectorLayer(existing.source(), "my corrected crowns")
    QgsProject.instance().addMapLayer(layer)
    return {"INPUT": str(plot.image), "OUTPUT": str(tmp / "out" / "crowns.gpkg")}


def train_params(tmp: Path, plot, crowns, **extra) -> dict:
    return {"RASTERS": [str(plot.image)], "ANNOTATIONS": crowns, "EPOCHS": 1, "BATCH_SIZE": 2,
            "OUTPUT_MODEL": str(tmp / "out" / "model.safetensors"), **extra}


def reprojected_crowns(tmp: Path, plot) -> dict:
    layer = crowns_layer([plot], tmp / "utm.gpkg", label="Tree")
    wgs84 = processing.run("native:reprojectlayer", {"INPUT": layer, "TARGET_CRS": "EPSG:4326",
                                                      "OUTPUT": str(tmp / "wgs84.gpkg")})["OUTPUT"]
    return train_params(tmp, plot, QgsVectorLayer(wgs84, "crowns in WGS 84"))


def crowns_elsewhere(tmp: Path, plot) -> dict:
    elsewhere = write_raster(tmp / "elsewhere.tif", 100, 100)
    return {**train_params(tmp, plot, crowns_layer([plot], tmp / "c.gpkg")), "RASTERS": [str(elsewhere)]}


def no_crowns(tmp: Path, plot) -> dict:
    layer = crowns_layer([plot], tmp / "c.gpkg")
    layer.dataProvider().truncate()
    return train_params(tmp, plot, layer)


def unknown_labels(tmp: Path, plot) -> dict:
    return train_params(tmp, plot, crowns_layer([plot], tmp / "c.gpkg", label="Dead"))


def empty_reference(tmp: Path, plot) -> dict:
    predictions = crowns_layer([plot], tmp / "p.gpkg")
    reference = crowns_layer([plot], tmp / "r.gpkg")
    reference.dataProvider().truncate()
    return {"PREDICTIONS": predictions, "GROUND_TRUTH": reference, "OUTPUT": str(tmp / "out" / "outcome.gpkg")}


def evaluate_output_missing_folder(tmp: Path, plot) -> dict:
    layer = crowns_layer([plot], tmp / "p.gpkg")
    return {"PREDICTIONS": layer, "GROUND_TRUTH": layer, "OUTPUT": str(tmp / "no" / "such" / "outcome.gpkg")}


CASES = [
    Case("corrupt file", "detect", detect_input(garbage), r"cannot read .*garbage\.tif as a raster.*GeoTIFF"),
    Case("truncated GeoTIFF", "detect", detect_input(truncated), r"damaged or truncated.*download it again"),
    Case("one-band raster", "detect", detect_input(one_band), r"1 colour band\(s\); tree-crown detection needs an RGB"),
    Case("raster of a single nodata value", "detect",
         detect_input(lambda t, p: write_raster(t / "nodata.tif", 100, 100, nodata=0, nodata_mask=np.ones((100, 100), bool))),
         r"no valid pixels: every pixel is nodata \(nodata value 0\).*check the raster's nodata value"),
    Case("1 x 1 px raster", "detect", detect_input(lambda t, p: write_raster(t / "one.tif", 1, 1)),
         r"1 x 1 px.*too small to hold a tree crown"),
    Case("raster of 100,000 x 10 px", "detect", detect_input(lambda t, p: write_raster(t / "strip.tif", 100_000, 10)),
         r"100000 x 10 px, 10000\.0 x 1\.0 m.*too small to hold a tree crown"),
    Case("rotated geotransform", "detect",
         detect_input(lambda t, p: write_raster(t / "rotated.tif", 200, 200,
                                                transform=Affine.rotation(30) * Affine(0.1, 0, 0, 0, -0.1, 0))),
         r"rotated geotransform.*warp it first"),
    Case("raster in EPSG:4326", "detect", detect_input(in_wgs84), None),
    Case("unknown checkpoint file", "detect", model_case(lambda t: garbage(t, None).rename(t / "model.ckpt")),
         r"not a model checkpoint this plugin can read.*use a treecrowns \.safetensors file"),
    Case(".safetensors with wrong tensor shapes", "detect",
         model_case(lambda t: checkpoint_variant(t, "shapes.safetensors", wrong_shapes)),
         r"do not fit the architecture its metadata describes.*damaged"),
    Case(".pt whose pickle runs code", "detect", model_case(code_running_pickle), r"not a model checkpoint this plugin can read"),
    Case("checkpoint of a newer format", "detect", model_case(lambda t: checkpoint_variant(t, "new.safetensors", newer_format)),
         r"format version 99 is not supported.*update the plugin"),
    Case("output folder that does not exist", "detect",
         lambda t, p: {"INPUT": str(p.image), "OUTPUT": str(t / "no" / "such" / "crowns.gpkg")}, r"folder .* does not exist"),
    Case("read-only output folder", "detect", read_only_output, r"output folder .* is read-only"),
    Case("output file open in another layer", "detect", output_open_as_layer,
         r"crowns\.gpkg is open as the layer 'my corrected crowns'.*choose another file name"),
    Case("annotation layer in another CRS (reprojected)", "train", reprojected_crowns, None),
    Case("crowns outside every raster", "train", crowns_elsewhere, r"lie on the chosen raster"),
    Case("annotation layer with no crowns", "train", no_crowns, r"has no features"),
    Case("labels the base model lacks", "train", unknown_labels,
         r"class\(es\) \['Dead'\] but the base model has 1.*let training add the new classes"),
    Case("training output folder read-only", "train", lambda t, p: train_params(t, p, crowns_layer([p], t / "c.gpkg")),
         r"output folder .* is read-only"),
    Case("reference layer with no crowns", "evaluate", empty_reference, r"has no crowns to score against"),
    Case("evaluation output in a folder that does not exist", "evaluate", evaluate_output_missing_folder, r"does not exist"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_explained_and_leaves_no_file(case: Case, osbs_plot, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    read_only = "read-only" in case.name
    project_layers = set(QgsProject.instance().mapLayers())
    try:
        # Root writes anywhere: a read-only file system is the one folder it cannot write to.
        with mounted(out, "ro,size=1m") if read_only and IS_ROOT else _nothing():
            params = case.build(tmp_path, osbs_plot)
            if read_only and not IS_ROOT:
                out.chmod(0o555)
            before = set(out.iterdir())
            if case.expect is None:
                processing.run(f"treecrowns:{case.algorithm}", params)
                return
            with pytest.raises(QgsProcessingException, match=case.expect):
                processing.run(f"treecrowns:{case.algorithm}", params)
            assert set(out.iterdir()) == before, "a failed run leaves no file"
            assert not (tmp_path / "ran").exists(), "a checkpoint's pickle never runs code"
    finally:
        QgsProject.instance().removeMapLayers(list(set(QgsProject.instance().mapLayers()) - project_layers))
        if read_only and not IS_ROOT:
            out.chmod(0o755)


@contextmanager
def _nothing():
    yield


def test_a_training_cancelled_in_its_first_batch_writes_no_checkpoint(osbs_plot, tmp_path):
    (tmp_path / "out").mkdir()
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="cancelled before the first epoch finished; no checkpoint"):
        processing.run("treecrowns:train", train_params(tmp_path, osbs_plot, crowns_layer([osbs_plot], tmp_path / "c.gpkg")),
                       feedback=feedback)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(not IS_ROOT, reason="a full file system is made with a tmpfs mount, which needs root")
def test_a_full_disk_is_reported_and_leaves_no_half_written_layer(osbs_plot, tmp_path):
    with mounted(tmp_path / "full", "size=64k") as folder:
        with pytest.raises(QgsProcessingException, match="(?i)no space left|could not create|cannot write|disk"):
            processing.run("treecrowns:detect", {"INPUT": str(osbs_plot.image), "OUTPUT": str(folder / "crowns.gpkg")})
        assert [p.name for p in folder.iterdir()] == []
