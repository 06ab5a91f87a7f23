"""Tiled detection end to end, with a stand-in network that finds the synthetic crowns exactly."""

from pathlib import Path

import numpy as np
import pytest

from synthetic import crown_map_box, oracle_model, write_raster
from treecrowns.core.annotations import map_boxes_to_pixels
from treecrowns.core.boxes import merge_window_detections
from treecrowns.core.errors import Cancelled
from treecrowns.core.prediction import DetectionSettings, detect


def sorted_boxes(boxes):
    return sorted(tuple(round(v, 6) for v in b) for b in boxes)


def test_boxes_land_on_the_crowns_in_map_coordinates_exactly(crowns_raster):
    path, crowns = crowns_raster
    found = detect(path, oracle_model(patch_size=100), DetectionSettings(overlap=0.4))
    assert found.labels == ("Tree",) * len(crowns)
    assert sorted_boxes(found.boxes) == sorted_boxes(crown_map_box(c) for c in crowns)


def test_crown_across_a_window_boundary_is_reported_once(tmp_path):
    # Windows of 100 px with 40 % overlap start at 0, 60, 120 ...; this crown straddles 100 and 120.
    crown = (85, 30, 30)
    path = write_raster(tmp_path / "straddle.tif", 220, 100, [crown])
    found = detect(path, oracle_model(patch_size=100), DetectionSettings(overlap=0.4))
    assert len(found) == 1
    assert sorted_boxes(found.boxes) == sorted_boxes([crown_map_box(crown)])


def test_resampling_to_the_model_resolution_keeps_boxes_on_the_crowns(crowns_raster):
    path, crowns = crowns_raster
    model = oracle_model(ground_resolution_m=0.2, patch_size=60)
    found = detect(path, model, DetectionSettings(overlap=0.5))
    assert len(found) == len(crowns)
    expected = np.array(sorted_boxes(crown_map_box(c) for c in crowns))
    assert np.abs(np.array(sorted_boxes(found.boxes)) - expected).max() <= 0.2  # one model pixel


def test_resampling_can_be_turned_off(crowns_raster):
    path, crowns = crowns_raster
    model = oracle_model(ground_resolution_m=0.2, patch_size=100)
    found = detect(path, model, DetectionSettings(resample=False, overlap=0.4))
    assert sorted_boxes(found.boxes) == sorted_boxes(crown_map_box(c) for c in crowns)


def test_raster_smaller_than_a_patch(tmp_path):
    crown = (5, 5, 10)
    path = write_raster(tmp_path / "small.tif", 30, 25, [crown])
    found = detect(path, oracle_model(patch_size=100))
    assert sorted_boxes(found.boxes) == sorted_boxes([crown_map_box(crown)])


def test_no_crowns_are_reported_in_nodata(tmp_path):
    crowns = [(10, 10, 20), (60, 10, 20)]
    mask = np.zeros((50, 100), dtype=bool)
    mask[:, 50:] = True
    path = write_raster(tmp_path / "nodata.tif", 100, 50, crowns, nodata=255, nodata_mask=mask)
    found = detect(path, oracle_model(patch_size=100))
    assert sorted_boxes(found.boxes) == sorted_boxes([crown_map_box(crowns[0])])


def test_progress_is_reported_and_cancel_stops_before_the_next_batch(crowns_raster):
    path, _ = crowns_raster
    model = oracle_model(patch_size=60)
    fractions, messages = [], []
    detect(path, model, DetectionSettings(batch_size=2), progress=lambda f, m: (fractions.append(f), messages.append(m)))
    assert fractions[-1] == 1.0 and fractions == sorted(fractions) and len(fractions) > 3
    # 300 x 240 px at 10 cm: 0.072 ha, told as ground covered and time left.
    assert messages[0].startswith(f"{fractions[0] * 0.072:.1f} of 0.1 ha, about ") and messages[-1] == "0.1 of 0.1 ha, done"
    calls_before = model.network.calls
    with pytest.raises(Cancelled):
        detect(path, model, DetectionSettings(batch_size=2), should_stop=lambda: model.network.calls > calls_before)
    assert model.network.calls == calls_before + 1


def test_unreferenced_raster_gives_boxes_where_qgis_draws_it_and_a_warning(tmp_path):
    crown = (10, 20, 15)
    path = write_raster(tmp_path / "plain.tif", 60, 50, [crown], crs=None)
    found = detect(path, oracle_model(patch_size=100))
    assert sorted_boxes(found.pixel_boxes) == [(10.0, 20.0, 25.0, 35.0)]
    assert sorted_boxes(found.boxes) == [(10.0, -35.0, 25.0, -20.0)]  # x = column, y = -row
    assert any("not georeferenced" in w for w in found.warnings)
    drawn_back = map_boxes_to_pixels(found.boxes, found.raster)
    assert sorted_boxes(drawn_back) == [(10.0, 20.0, 25.0, 35.0)]


def test_merge_prefers_the_whole_crown_over_the_copy_cut_by_a_window_edge():
    boxes = np.array([[90, 10, 100, 40], [85, 10, 115, 40], [200, 200, 230, 230]], dtype=float)
    scores = np.array([0.95, 0.8, 0.7])
    labels = np.array([0, 0, 0])
    cut = np.array([True, False, False])
    kept = merge_window_detections(boxes, scores, labels, cut, nms_threshold=0.5)
    assert kept.tolist() == [1, 2]


def test_merge_keeps_overlapping_crowns_of_different_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    kept = merge_window_detections(boxes, np.array([0.9, 0.8]), np.array([0, 1]), np.array([False, False]), 0.3)
    assert kept.tolist() == [0, 1]


def test_mixed_precision_finds_the_crowns_of_full_precision(osbs_plot):
    """The GPU's 16-bit path, run on the CPU (bfloat16): the same crowns, scores within a few hundredths."""
    from treecrowns.core.boxes import iou_matrix
    from treecrowns.core.checkpoint import load_checkpoint
    bundled = Path(__file__).resolve().parents[2] / "resources" / "models" / "treecrowns-neon-lite.safetensors"
    model = load_checkpoint(bundled)
    full = detect(str(osbs_plot.image), model, DetectionSettings(device="cpu", mixed_precision=False))
    half = detect(str(osbs_plot.image), model, DetectionSettings(device="cpu", mixed_precision=True))
    assert len(full) > 20
    # bfloat16 keeps 8 bits of mantissa (float16 on a GPU keeps 11): boxes move by a pixel or so.
    matched = iou_matrix(full.boxes, half.boxes).max(axis=1) > 0.7
    assert matched.mean() >= 0.9 and abs(len(half) - len(full)) <= 0.1 * len(full)
