"""Test-time augmentation: four turned views of each patch, mapped back and fused into one box per crown."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from synthetic import BrightSquareDetector, crown_map_box, oracle_model, write_raster
from treecrowns.core.annotations import ImageAnnotations
from treecrowns.core.checkpoint import LoadedModel, ModelMetadata, load_checkpoint, new_model, save_checkpoint
from treecrowns.core.errors import CheckpointError
from treecrowns.core.model import lite_architecture
from treecrowns.core.prediction import DetectionSettings, detect
from treecrowns.core.validation import calibrate_inference, preferred_way
from treecrowns.core.views import ALL_SYMMETRIES, ROTATIONS, apply_symmetry, fuse_scales, fuse_views, undo_symmetry


def test_every_symmetry_maps_boxes_back_to_where_they_were_and_the_four_turns_are_distinct():
    image = torch.zeros((1, 3, 60, 60))
    image[0, 1, 5:15, 20:50] = 1.0  # a crown 30 px wide and 10 px tall, away from every axis of symmetry
    detector = BrightSquareDetector()
    seen = {}
    for symmetry in ALL_SYMMETRIES:
        view = apply_symmetry(image, symmetry)
        found = detector(list(view))[0]["boxes"].numpy()
        seen[symmetry] = tuple(found[0])
        assert undo_symmetry(found, symmetry, 60).tolist() == [[20.0, 5.0, 50.0, 15.0]]
    assert len(set(seen.values())) == 8
    assert len({seen[turn] for turn in ROTATIONS}) == 4
    # Turns, not mirror images: each is an even number of reflections.
    assert all((s.transpose + s.flip_x + s.flip_y) % 2 == 0 for s in ROTATIONS)


def test_views_that_agree_fuse_into_one_crown_with_the_mean_score():
    boxes = np.array([[10, 10, 30, 30]] * 4, dtype=float) + np.arange(4)[:, None] * [0, 0, 0.5, 0.5]
    scores = np.full(4, 0.6)
    fused_boxes, fused_scores, fused_labels = fuse_views(boxes, scores, np.zeros(4, dtype=int), np.arange(4), 4)
    assert len(fused_boxes) == 1
    assert fused_scores[0] == pytest.approx(0.6)
    np.testing.assert_allclose(fused_boxes[0], [10, 10, 30.75, 30.75])
    assert fused_labels.tolist() == [0]


def test_a_crown_one_view_sees_keeps_a_quarter_of_its_score_and_classes_never_merge():
    boxes = np.array([[0, 0, 20, 20], [0, 0, 20, 20], [50, 50, 70, 70], [50, 50, 70, 70]], dtype=float)
    scores = np.array([0.8, 0.8, 0.9, 0.7])
    labels = np.array([0, 1, 0, 0])
    views = np.array([0, 0, 0, 0])  # two detections of the same view count once
    fused_boxes, fused_scores, fused_labels = fuse_views(boxes, scores, labels, views, 4)
    order = np.lexsort((fused_labels, fused_boxes[:, 0]))
    assert fused_labels[order].tolist() == [0, 1, 0]
    np.testing.assert_allclose(fused_scores[order], [0.2, 0.2, 0.9 / 4])


def test_detection_with_four_views_puts_every_crown_where_one_view_does(tmp_path):
    crowns = [(10, 10, 20), (70, 40, 12), (130, 90, 25)]
    path = write_raster(tmp_path / "views.tif", 180, 140, crowns)
    model = oracle_model(patch_size=100)
    one = detect(path, model, DetectionSettings(overlap=0.4))
    four = detect(path, model, DetectionSettings(overlap=0.4, test_time_augmentation=True))
    expected = sorted(crown_map_box(c) for c in crowns)
    assert sorted(map(tuple, np.round(four.boxes, 6))) == sorted(map(tuple, np.round(one.boxes, 6))) == expected
    np.testing.assert_allclose(four.scores, 0.9)  # the stand-in finds each crown in every view


def test_the_checkpoint_says_whether_to_fuse_views_and_the_threshold_follows_the_choice(tmp_path):
    calibration = {"one view": {"score_threshold": 0.3}, "four views": {"score_threshold": 0.15}}
    model = new_model(
        ModelMetadata(
            architecture=lite_architecture(), labels=("Tree",), ground_resolution_m=0.1, patch_size=64,
            score_threshold=0.15, test_time_augmentation=True, metrics={"calibration": calibration},
        )
    )
    path = save_checkpoint(model, tmp_path / "views.safetensors")
    meta = load_checkpoint(path).metadata
    assert meta.test_time_augmentation is True
    assert meta.score_threshold_for(True) == 0.15 and meta.score_threshold_for(False) == 0.3
    raster = write_raster(tmp_path / "plot.tif", 120, 120, [(20, 20, 30)])
    loaded = load_checkpoint(path)
    calls = []
    original = loaded.network.forward
    loaded.network.forward = lambda images, targets=None: calls.append(len(images)) or original(images, targets)
    detect(raster, loaded, DetectionSettings(batch_size=1))
    assert loaded.network.score_thresh == 0.15 and calls and all(n == 4 for n in calls)
    calls.clear()
    detect(raster, loaded, DetectionSettings(batch_size=1, test_time_augmentation=False))
    assert loaded.network.score_thresh == 0.3 and calls and all(n == 1 for n in calls)


class CornerGhostDetector(BrightSquareDetector):
    """Finds every bright crown (score 0.9) and also, in every view, a confident ghost in the patch's top-left corner."""

    def __call__(self, images):
        outputs = super().__call__(images)
        for out in outputs:
            out["boxes"] = torch.cat([out["boxes"], torch.tensor([[2.0, 2.0, 12.0, 12.0]])])
            out["scores"] = torch.cat([out["scores"], torch.tensor([0.95])])
            out["labels"] = torch.cat([out["labels"], torch.tensor([0])])
        return outputs


def test_calibration_chooses_four_views_when_they_remove_errors_no_threshold_can(tmp_path):
    crowns = [(30, 30, 20), (55, 40, 14)]
    path = write_raster(tmp_path / "plot.tif", 100, 100, crowns)
    reference = ImageAnnotations(str(path), np.array([[c, r, c + s, r + s] for c, r, s in crowns], float), ("Tree", "Tree"))
    model = oracle_model(patch_size=100)
    model.network = CornerGhostDetector()
    calibrated, figures = calibrate_inference(model, [reference], device="cpu")
    # One view: the ghost outscores the crowns, so every threshold keeps it or loses them.
    assert figures["one view"]["f1"] == pytest.approx(0.8)
    # Four views: the ghost lands on a different corner in each view and fuses to 0.95 / 4.
    assert figures["four views"]["f1"] == 1.0 and figures["four views"]["score_threshold"] > 0.95 / 4
    assert calibrated.metadata.test_time_augmentation is True
    assert calibrated.metadata.score_threshold == figures["four views"]["score_threshold"]
    assert calibrated.metadata.score_threshold_for(False) == figures["one view"]["score_threshold"]


def test_calibration_keeps_four_views_unless_one_view_is_clearly_better():
    def figures(one, four):
        return {"one view": {"f1": one, "score_threshold": 0.3}, "four views": {"f1": four, "score_threshold": 0.15}}

    assert preferred_way(figures(0.485, 0.462)) == "four views", "a held-out margin of 0.023 is noise on a dozen plots"
    assert preferred_way(figures(0.50, 0.50)) == "four views"
    assert preferred_way(figures(0.60, 0.55)) == "one view"


class SmallCrownDetector(BrightSquareDetector):
    """Finds only crowns at most 16 px wide in the patch it is given, as a network misses crowns bigger than it learnt."""

    def __call__(self, images):
        outputs = super().__call__(images)
        for out in outputs:
            small = (out["boxes"][:, 2] - out["boxes"][:, 0]) <= 16
            out["boxes"], out["scores"], out["labels"] = out["boxes"][small], out["scores"][small], out["labels"][small]
        return outputs


def two_scale_model(network) -> LoadedModel:
    model = oracle_model(patch_size=100)
    model.network = network
    model.metadata = replace(model.metadata, test_time_augmentation=True, view_scales=(1.0, 1.25), score_threshold=0.3)
    return model


def test_views_at_two_scales_find_a_crown_too_big_for_one_and_fuse_each_crown_once(tmp_path):
    small, big = (20, 20, 10), (60, 50, 18)  # 18 px at 0.1 m is 14.4 px read at 0.125 m
    path = write_raster(tmp_path / "two-scales.tif", 120, 100, [small, big])
    model = two_scale_model(SmallCrownDetector())
    one_scale = detect(path, LoadedModel(model.network, replace(model.metadata, view_scales=(1.0,))))
    assert [tuple(np.round(b, 6)) for b in one_scale.boxes] == [crown_map_box(small)]
    progress = []
    found = detect(path, model, progress=lambda fraction, message: progress.append((fraction, message)))
    order = np.argsort(found.boxes[:, 0])
    np.testing.assert_allclose(found.boxes[order], [crown_map_box(small), crown_map_box(big)], atol=0.15)
    # Both scales see the small crown; only the coarser one sees the big crown, so it keeps half the score.
    np.testing.assert_allclose(found.scores[order], [0.9, 0.45])
    # Progress runs once to the end over the windows of both scales.
    assert [f for f, _ in progress] == sorted(f for f, _ in progress) and progress[-1][0] == 1.0


class EdgeShyDetector(BrightSquareDetector):
    """Misses crowns that touch the patch border, as a network misses most of a crown cut in half."""

    def __call__(self, images):
        outputs = super().__call__(images)
        for image, out in zip(images, outputs):
            size = image.shape[-1]
            whole = (out["boxes"][:, :2] > 0).all(dim=1) & (out["boxes"][:, 2:] < size).all(dim=1)
            out["boxes"], out["scores"], out["labels"] = out["boxes"][whole], out["scores"][whole], out["labels"][whole]
        return outputs


@pytest.mark.parametrize("scales", [(1.0, 1.25), (0.8, 1.0)])
def test_every_scale_reads_the_same_windows_so_a_crown_whole_at_one_scale_is_whole_at_the_other(tmp_path, scales):
    # Scales 1 and 1.25: 100 px windows every 85 px, and the crown at columns 104-129 lies whole in
    # the window from 85 to 185. Full-patch windows at 1.25 x (125 px every 106 px) would cut it at
    # 125 and at 106, and the fused crown would keep half its score, as on a large orthophoto
    # before this was fixed. Scales 0.8 and 1: the windows are a patch at 0.8 x (80 px every 68 px),
    # the crown lies whole in the one from 68 to 148, and scale 1 reads it into 80 px.
    crown = (104, 40, 25)
    path = write_raster(tmp_path / "strip.tif", 300, 100, [crown])
    model = two_scale_model(EdgeShyDetector())
    found = detect(path, LoadedModel(model.network, replace(model.metadata, view_scales=scales)))
    np.testing.assert_allclose(found.boxes, [crown_map_box(crown)], atol=0.15)
    np.testing.assert_allclose(found.scores, [0.9])


def test_calibration_sees_the_view_scales_too(tmp_path):
    crowns = [(20, 20, 10), (60, 50, 18)]
    path = write_raster(tmp_path / "plot.tif", 100, 100, crowns)
    reference = ImageAnnotations(str(path), np.array([[c, r, c + s, r + s] for c, r, s in crowns], float), ("Tree", "Tree"))
    calibrated, figures = calibrate_inference(two_scale_model(SmallCrownDetector()), [reference], device="cpu")
    assert figures["one view"]["f1"] == pytest.approx(2 / 3, abs=1e-4), "one view at scale 1 misses the big crown"
    assert figures["four views"]["f1"] == 1.0 and figures["four views"]["score_threshold"] <= 0.45
    assert calibrated.metadata.test_time_augmentation and calibrated.metadata.view_scales == (1.0, 1.25)


def test_the_checkpoint_keeps_its_view_scales_and_older_checkpoints_use_one_scale(tmp_path):
    meta = ModelMetadata(architecture=lite_architecture(), labels=("Tree",), ground_resolution_m=0.2, patch_size=64,
                         test_time_augmentation=True, view_scales=(1.0, 1.25))
    path = save_checkpoint(new_model(meta), tmp_path / "scales.safetensors")
    loaded = load_checkpoint(path).metadata
    assert loaded.view_scales == (1.0, 1.25)
    assert loaded.views_description() == "four turned views at 0.2 and 0.25 m"
    older = json.loads(meta.to_json())
    del older["view_scales"]
    assert ModelMetadata.from_json(json.dumps(older)).view_scales == (1.0,)
    with pytest.raises(CheckpointError, match="view scales"):
        replace(meta, view_scales=(0.0,))


def test_fusing_a_whole_orthophotos_crowns_needs_memory_for_the_crowns_not_for_every_pair():
    import tracemalloc

    rng = np.random.default_rng(0)
    count = 60_000  # a dense IoU matrix of these would take 29 GB
    corners = rng.uniform(0, 30_000, (count, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(10, 60, (count, 2))], axis=1)
    twice = np.concatenate([boxes, boxes + 1.0])  # each crown seen at two scales, one pixel apart
    scores = np.concatenate([np.full(count, 0.8), np.full(count, 0.4)])
    found = [(twice[:count], scores[:count], np.zeros(count, dtype=np.int64)),
             (twice[count:], scores[count:], np.zeros(count, dtype=np.int64))]
    tracemalloc.start()
    fused_boxes, fused_scores, _ = fuse_scales(found, score_threshold=0.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 500e6
    # Crowns that happen to overlap each other may merge; nearly all stay apart, each with both scales' mean score.
    assert len(fused_boxes) > 0.95 * count and np.median(fused_scores) == pytest.approx(0.6)
