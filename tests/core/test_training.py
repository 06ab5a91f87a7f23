from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import pytest
from shapely.geometry import Polygon

from synthetic import scene, small_model, write_raster
from treecrowns.core.annotations import ImageAnnotations
from treecrowns.core.checkpoint import load_checkpoint
from treecrowns.core.errors import AnnotationError, Cancelled, CheckpointError, TreecrownsError
from treecrowns.core.prediction import DetectionSettings, detect
from treecrowns.core.style_mixing import MIXED_STAGES, attach_style_mixing
from treecrowns.core.patches import load_samples
from treecrowns.core.training import train, trainable_crowns
from treecrowns.core.training_settings import DEFAULT_RETRAINING_LEARNING_RATE, TrainingSettings, learning_rate_for, whole_network
from treecrowns.core.evaluation import evaluate


FAST = TrainingSettings(epochs=2, steps_per_epoch=3, batch_size=2, warmup_steps=2, device="cpu")


def test_training_writes_a_checkpoint_with_history_and_validation_metrics(tmp_path):
    items = [scene(tmp_path, f"s{i}", i, count=35, size=256) for i in range(5)]
    epochs = []
    result = train(small_model(), items, tmp_path / "out.safetensors", FAST, on_epoch=epochs.append)
    assert [e.epoch for e in epochs] == [1, 2] and all(np.isfinite(e.train_loss) for e in epochs)
    assert all(e.f1 is not None for e in epochs), "one of five rasters is held out for validation"
    loaded = load_checkpoint(result.checkpoint_path)
    assert loaded.metadata.metrics["validation"]["epoch"] == result.best_epoch
    assert loaded.metadata.provenance == {"parent": None}
    assert not list(tmp_path.glob(".*tmp"))


def test_cancel_keeps_the_last_good_checkpoint(tmp_path):
    items = [scene(tmp_path, f"s{i}", i) for i in range(2)]
    steps = []

    def progress(fraction, message):
        steps.append(fraction)

    result = train(small_model(), items, tmp_path / "out.safetensors", FAST, progress=progress,
                   should_stop=lambda: len(steps) >= 4)
    assert result.cancelled and result.best_epoch == 1
    assert load_checkpoint(tmp_path / "out.safetensors").metadata.labels == ("Tree",)


def test_cancel_before_the_first_epoch_writes_nothing(tmp_path):
    items = [scene(tmp_path, "s0", 0)]
    with pytest.raises(Cancelled):
        train(small_model(), items, tmp_path / "out.safetensors", FAST, should_stop=lambda: True)
    assert not (tmp_path / "out.safetensors").exists()


def test_annotation_classes_must_fit_the_base_model(tmp_path):
    item = scene(tmp_path, "s0", 0)
    other = ImageAnnotations(item.image_path, item.boxes, ("Dead",) * len(item.labels))
    with pytest.raises(CheckpointError, match="base model has 1"):
        train(small_model(), [item, other], tmp_path / "out.safetensors", FAST)


def test_nothing_to_train_on_is_an_error(tmp_path):
    empty = ImageAnnotations(str(write_raster(tmp_path / "e.tif", 64, 64)), np.zeros((0, 4)), ())
    with pytest.raises(AnnotationError, match="no annotated crowns"):
        train(small_model(), [empty], tmp_path / "out.safetensors", FAST)


def test_only_crowns_inside_the_reviewed_areas_count(tmp_path):
    item = scene(tmp_path, "s0", 0, count=35, size=256)
    centres = (item.boxes[:, 0] + item.boxes[:, 2]) / 2
    left = np.array([[0, 0, np.sort(centres)[5] + 0.5, 256]])  # the six leftmost crowns
    result = train(small_model(), [replace(item, regions=left)], tmp_path / "out.safetensors", FAST)
    assert "only 6 crowns to learn from" in result.notes[0]
    nowhere = np.array([[0, 0, 2, 2]])
    with pytest.raises(AnnotationError, match="none of the 35 annotated crowns lies inside the reviewed areas"):
        train(small_model(), [replace(item, regions=nowhere)], tmp_path / "none.safetensors", FAST)


def test_outside_a_reviewed_polygon_nothing_is_learnt(tmp_path):
    """An L-shaped reviewed area: the corner it leaves out of its bounding box is blacked out, its crowns unused."""
    crowns = [(10, 10, 20), (90, 10, 20), (10, 90, 20), (90, 90, 20)]  # (col, row, side); the last lies in the cut-out
    path = write_raster(tmp_path / "l.tif", 128, 128, crowns, seed=0)
    boxes = np.array([[c, r, c + s, r + s] for c, r, s in crowns], dtype=float)
    l_shape = Polygon([(0, 0), (128, 0), (128, 64), (64, 64), (64, 128), (0, 128)])
    item = ImageAnnotations(str(path), boxes, ("Tree",) * 4, regions=(l_shape,))
    assert trainable_crowns([item]) == 3
    [sample] = load_samples([item], ("Tree",), 0.1)
    image = sample.image.numpy()
    assert image[:, 70:, 70:].max() == 0, "the cut-out corner is black"
    assert image[:, 10:30, 90:110].min() > 0, "the reviewed part is as read"
    assert sorted(sample.boxes.tolist()) == sorted(boxes[:3].tolist())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("finest_level", "bfloat16"), [(3, False), (2, False), (3, True)],
    ids=["stride-8 pyramid", "stride-4 pyramid", "bfloat16 forward pass"],
)
def test_training_learns_to_find_synthetic_crowns(tmp_path, finest_level, bfloat16):
    items = [scene(tmp_path, f"s{i}", i) for i in range(6)]
    # Enough validation crowns (>= 30) that the epoch and score threshold are chosen on them.
    validation = scene(tmp_path, "validation", 98, count=35, size=256)
    held_out = scene(tmp_path, "held", 99, count=35, size=256)
    settings = whole_network(TrainingSettings(
        epochs=6, steps_per_epoch=25, batch_size=4, learning_rate=0.01, warmup_steps=20, device="cpu", bfloat16=bfloat16
    ))
    train(small_model(finest_level=finest_level), items, tmp_path / "out.safetensors", settings, validation_items=[validation])
    model = load_checkpoint(tmp_path / "out.safetensors")
    # Trained in bfloat16 or not, the checkpoint holds float32 weights, as every other one does.
    assert {value.dtype for value in model.network.state_dict().values() if value.is_floating_point()} == {torch.float32}
    found = detect(held_out.image_path, model, DetectionSettings())
    result = evaluate({"h": found.pixel_boxes}, {"h": held_out.boxes})
    assert result.f1 >= 0.7, result.as_dict()


def test_a_single_raster_is_split_into_training_and_validation_strips(tmp_path):
    from treecrowns.core.training import split_validation

    item = scene(tmp_path, "s0", 0)
    train_part, val_part = split_validation([item], 0.25, seed=0)
    assert [a.bounds for a in train_part[0].regions] == [(0, 0, 96, 128)]
    assert [a.bounds for a in val_part[0].regions] == [(96, 0, 128, 128)]
    triangle = Polygon([(0, 0), (128, 0), (0, 128)])
    train_part, val_part = split_validation([replace(item, regions=(triangle,))], 0.25, seed=0)
    assert train_part[0].regions[0].area + val_part[0].regions[0].area == pytest.approx(triangle.area)
    assert val_part[0].regions[0].bounds == (96, 0, 128, 32)
    big = scene(tmp_path, "big", 1, count=150, size=480)
    epochs = []
    result = train(small_model(), [big], tmp_path / "out.safetensors", FAST, on_epoch=epochs.append)
    assert all(e.f1 is not None for e in epochs), "one large corrected raster still gets validation figures"
    assert result.notes == ()


def test_two_corrected_rasters_are_both_learnt_from_and_five_give_one_whole_to_validation(tmp_path):
    from treecrowns.core.training import split_validation

    two = [scene(tmp_path, f"two{i}", i) for i in range(2)]
    train_part, val_part = split_validation(two, 0.2, seed=0)
    # Holding one of two rasters out would validate on half the crowns, not a fifth.
    assert [Path(i.image_path).name for i in train_part] == ["two0.tif", "two1.tif"]
    assert [Path(i.image_path).name for i in val_part] == ["two0.tif", "two1.tif"]
    assert all([a.bounds for a in item.regions] == [(102, 0, 128, 128)] for item in val_part)
    five = [scene(tmp_path, f"five{i}", i) for i in range(5)]
    train_part, val_part = split_validation(five, 0.2, seed=0)
    assert len(train_part) == 4 and len(val_part) == 1
    assert train_part[0].regions is None and val_part[0].regions is None, "whole rasters, not strips"


def test_only_plots_held_out_apart_choose_a_new_threshold_corrections_keep_the_base_one(tmp_path):
    """Crowns split off the corrections come from the plots being learnt: a threshold chosen there is too high elsewhere."""
    from treecrowns.core.validation import CALIBRATION_THRESHOLDS

    base = small_model()
    base.metadata = replace(base.metadata, score_threshold=0.77)  # not one calibration would choose
    big = scene(tmp_path, "big", 1, count=150, size=480)
    result = train(base, [big], tmp_path / "corrections.safetensors", FAST)
    assert load_checkpoint(result.checkpoint_path).metadata.score_threshold == 0.77
    assert result.metrics["f1"] is not None and result.base_metrics["f1"] is not None, "still measured against the base"
    base = small_model()
    base.metadata = replace(base.metadata, score_threshold=0.77)
    result = train(base, [scene(tmp_path, "s0", 0)], tmp_path / "builder.safetensors", FAST, validation_items=[big])
    assert load_checkpoint(result.checkpoint_path).metadata.score_threshold in CALIBRATION_THRESHOLDS


def test_too_few_held_out_crowns_are_trained_on_instead(tmp_path):
    item = scene(tmp_path, "s0", 0)  # 8 crowns: a 20 % strip would hold one or two
    epochs = []
    result = train(small_model(), [item], tmp_path / "out.safetensors", FAST, on_epoch=epochs.append)
    assert all(e.f1 is None for e in epochs)
    assert len(result.notes) == 2 and "only 8 crowns to learn from" in result.notes[0]
    assert "all crowns were used for training" in result.notes[1]
    assert result.metrics == {}, "no validation figures are claimed"
    assert load_checkpoint(result.checkpoint_path).metadata.score_threshold == small_model().metadata.score_threshold


def test_fine_tuning_defaults_keep_the_trunk_and_its_batchnorm_statistics(tmp_path):
    """One corrected plot must not overwrite what the trunk learnt on many sites."""
    model = small_model()
    trunk_before = {k: v.clone() for k, v in model.network.backbone.body.state_dict().items()}
    heads_before = {k: v.clone() for k, v in model.network.head.state_dict().items()}
    settings = TrainingSettings(epochs=1, steps_per_epoch=3, batch_size=2, warmup_steps=1, device="cpu")
    train(model, [scene(tmp_path, "s0", 0)], tmp_path / "out.safetensors", settings)
    tuned = load_checkpoint(tmp_path / "out.safetensors").network
    for key, value in tuned.backbone.body.state_dict().items():
        assert torch.equal(value, trunk_before[key]), key
    assert any(not torch.equal(v, heads_before[k]) for k, v in tuned.head.state_dict().items())
    slower = TrainingSettings(epochs=1, steps_per_epoch=3, batch_size=2, warmup_steps=1, device="cpu",
                              freeze_batchnorm=False, trunk_learning_rate_factor=1.0)
    train(model, [scene(tmp_path, "s0", 0)], tmp_path / "all.safetensors", slower)
    trained = load_checkpoint(tmp_path / "all.safetensors").network.backbone.body.state_dict()
    statistics = next(k for k in trunk_before if k.endswith("running_mean"))
    assert not torch.equal(trained[statistics], trunk_before[statistics]), "training from scratch moves everything"


def test_retraining_takes_the_rate_the_checkpoint_states_unless_the_settings_name_one(tmp_path):
    """A longer-trained model learns corrections only at a larger rate; its checkpoint says which."""
    items = [scene(tmp_path, "s0", 0)]
    settings = TrainingSettings(epochs=1, steps_per_epoch=3, batch_size=2, warmup_steps=1, device="cpu")

    def heads_after(retraining_rate, learning_rate, name):
        model = small_model()
        model.metadata = replace(model.metadata, retraining_learning_rate=retraining_rate)
        train(model, items, tmp_path / name, replace(settings, learning_rate=learning_rate))
        return load_checkpoint(tmp_path / name)

    own = heads_after(0.05, None, "own.safetensors")
    named = heads_after(0.0001, 0.05, "named.safetensors")
    small = heads_after(0.0001, None, "small.safetensors")
    assert own.metadata.retraining_learning_rate == 0.05, "a retrained model keeps its base's rate"
    heads = [m.network.head.state_dict() for m in (own, named, small)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0]), "the rate named in the settings wins"
    start = small_model().network.head.state_dict()
    moved = [sum(float((h[k] - start[k]).abs().sum()) for k in start) for h in heads]
    assert moved[0] > 10 * moved[2], moved
    assert learning_rate_for(small_model().metadata) == DEFAULT_RETRAINING_LEARNING_RATE


def test_settings_a_user_could_mistype_are_refused_with_what_to_change():
    with pytest.raises(TreecrownsError, match="epochs must be at least 1.*learning rate must be above 0"):
        TrainingSettings(epochs=0, learning_rate=0.0)
    with pytest.raises(TreecrownsError, match="validation share"):
        TrainingSettings(validation_share=1.0)
    with pytest.raises(TreecrownsError, match="scale jitter"):
        TrainingSettings(scale_jitter=(1.5, 0.5))
    with pytest.raises(TreecrownsError, match="native share"):
        TrainingSettings(native_share=1.5)
    with pytest.raises(TreecrownsError, match="mosaic share"):
        TrainingSettings(mosaic_share=-0.1)
    with pytest.raises(TreecrownsError, match="weight average decay"):
        TrainingSettings(weight_average_decay=1.0)
    with pytest.raises(TreecrownsError, match="style mixing"):
        TrainingSettings(style_mixing=1.5)
    with pytest.raises(TreecrownsError, match="box loss must be one of l1, giou, got 'iou'"):
        TrainingSettings(box_loss="iou")


def test_the_giou_box_loss_scores_overlap_and_trains_other_weights(tmp_path):
    items = [scene(tmp_path, "s0", 0)]
    reports = {}
    for loss in ("l1", "giou"):
        model = small_model()
        train(model, items, tmp_path / f"{loss}.safetensors", whole_network(replace(FAST, epochs=1, box_loss=loss)),
              on_epoch=lambda report, loss=loss: reports.setdefault(loss, report))
    # One minus the generalised IoU of a box with its crown lies between 0 and 2; the same
    # patches scored by L1 on the anchor offsets give another figure.
    assert 0 < reports["giou"].regression_loss <= 2
    assert reports["giou"].regression_loss != pytest.approx(reports["l1"].regression_loss, rel=0.05)
    l1_weights = load_checkpoint(tmp_path / "l1.safetensors").network.state_dict()
    giou_weights = load_checkpoint(tmp_path / "giou.safetensors").network.state_dict()
    assert any(not torch.equal(l1_weights[k], v) for k, v in giou_weights.items())


def test_weight_averaging_saves_the_running_average_of_the_steps_not_the_last_step(tmp_path):
    model = small_model()
    steps = []  # the trained network's head after each step
    settings = whole_network(replace(FAST, epochs=1, weight_average_decay=0.9))
    head = model.network.head

    def progress(fraction, message):
        steps.append({k: v.clone() for k, v in head.state_dict().items()})

    # 8 crowns: too few to hold any out, so the one epoch is saved whatever it scores.
    train(model, [scene(tmp_path, "s0", 0)], tmp_path / "out.safetensors", settings, progress=progress)
    saved = load_checkpoint(tmp_path / "out.safetensors").network.head.state_dict()
    assert len(steps) == 3
    for key, last in steps[-1].items():
        # The first step is copied; later ones are blended in with a decay that ramps up:
        # (1 + n) / (10 + n) after n steps, at most 0.9.
        average = steps[0][key]
        for n, step in enumerate(steps[1:], start=1):
            decay = min(0.9, (1 + n) / (10 + n))
            average = average * decay + step[key] * (1 - decay)
        assert torch.allclose(saved[key], average, atol=1e-6), key
    assert any(not torch.equal(saved[k], v) for k, v in steps[-1].items()), "the last step alone is not what is saved"


def test_style_mixing_acts_only_while_training_and_leaves_no_hooks_behind(tmp_path):
    items = [scene(tmp_path, "s0", 0)]
    plain = small_model()
    train(plain, items, tmp_path / "plain.safetensors", whole_network(replace(FAST, epochs=1)))
    mixed = small_model()
    train(mixed, items, tmp_path / "mixed.safetensors", whole_network(replace(FAST, epochs=1, style_mixing=1.0)))
    trunk = mixed.network.backbone.body
    assert all(not getattr(trunk, stage)._forward_hooks for stage in MIXED_STAGES), "hooks removed after training"
    plain_weights = load_checkpoint(tmp_path / "plain.safetensors").network.state_dict()
    mixed_weights = load_checkpoint(tmp_path / "mixed.safetensors").network.state_dict()
    assert any(not torch.equal(plain_weights[k], v) for k, v in mixed_weights.items()), "mixing changed what was learnt"

    network = mixed.network.eval()
    image = [torch.rand(3, 128, 128)]
    with torch.no_grad():
        before = network(image)[0]["scores"]
        handles = attach_style_mixing(network, 1.0, np.random.default_rng(0))
        after = network(image)[0]["scores"]
    for handle in handles:
        handle.remove()
    assert torch.equal(before, after), "detection is untouched"


def _region_with_one_crown(name: str, size: int, crown: tuple[int, int, int, int], value: float):
    """A grey region with one bright square crown and its box (model pixels)."""
    from treecrowns.core.patches import Sample

    image = torch.full((3, size, size), 60.0)
    x0, y0, x1, y1 = crown
    image[:, y0:y1, x0:x1] = value
    return Sample(name, image, torch.tensor([crown], dtype=torch.float32), torch.zeros(1, dtype=torch.int64))


def test_a_mosaic_keeps_every_crown_on_its_tree_and_cuts_large_regions_to_one_cell():
    from random import Random

    from treecrowns.core.patches import mosaic_of_samples

    regions = [_region_with_one_crown(f"r{i}", 100, (10 + 15 * i, 20, 40 + 15 * i, 55), 150.0 + 20 * i) for i in range(3)]
    # A region twice a patch wide: its crown is kept only when the cut cell holds it.
    large = _region_with_one_crown("large", 200, (150, 150, 190, 190), 250.0)
    kept_large = 0
    for seed in range(20):
        mosaic = mosaic_of_samples([*regions, large], 100, Random(seed))
        assert mosaic.image.shape == (3, 200, 200)
        values = set()
        for x0, y0, x1, y1 in mosaic.boxes.round().int().tolist():
            inside = mosaic.image[:, y0:y1, x0:x1]
            assert inside.min() == inside.max() > 60.0, "a box must lie exactly on its crown"
            values.add(inside.max().item())
        assert {150.0, 170.0, 190.0} <= values
        kept_large += 250.0 in values
    assert 0 < kept_large < 20


def test_mosaic_patches_fill_zoomed_out_patches_with_trees_instead_of_a_black_border():
    """At zoom 2 a patch covers four regions: without a mosaic three quarters of it would be black."""
    from random import Random

    from treecrowns.core.patches import patch_source, random_patch

    regions = [_region_with_one_crown(f"r{i}", 100, (30, 30, 70, 70), 200.0) for i in range(5)]

    def black_share_and_crowns(mosaic_share: float) -> tuple[float, float]:
        settings = TrainingSettings(scale_jitter=(2.0, 2.0), mosaic_share=mosaic_share, colour_jitter=0.0)
        rng = Random(0)
        patches = [random_patch(patch_source(regions, 0, [1.0] * 5, 100, settings, rng), 100, settings, rng) for _ in range(20)]
        black = np.mean([(image.sum(dim=0) == 0).float().mean().item() for image, _ in patches])
        return black, np.mean([len(target["boxes"]) for _, target in patches])

    black, crowns = black_share_and_crowns(0.0)
    assert black > 0.7 and crowns == 1
    black, crowns = black_share_and_crowns(1.0)
    assert black < 0.05 and crowns == 4


def test_native_share_keeps_that_share_of_training_patches_unresized():
    """Detection at the model's resolution reads unresized pixels; these patches show the network such pixels."""
    from random import Random

    from treecrowns.core.patches import Sample, random_patch

    rows, cols = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    checkerboard = ((rows + cols) % 2 * 255.0).expand(3, 256, 256)
    sample = Sample("checkerboard", checkerboard, torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64))

    def unresized_patches(native_share: float) -> int:
        settings = TrainingSettings(native_share=native_share, colour_jitter=0.0)
        rng = Random(0)
        patches = [random_patch(sample, 200, settings, rng)[0] for _ in range(100)]
        # Any resize blends neighbouring black and white pixels into greys.
        return sum(bool(((patch == 0) | (patch == 1)).all()) for patch in patches)

    assert unresized_patches(1.0) == 100
    assert 35 <= unresized_patches(0.5) <= 65
    assert unresized_patches(0.0) <= 3  # only when a zoom rounds to 1


def test_colour_jitter_strength_widens_the_colour_changes():
    from random import Random

    from treecrowns.core.patches import colour_jitter

    grey = torch.full((3, 8, 8), 0.5)

    def brightness_spread(strength):
        means = [colour_jitter(grey, Random(seed), strength).mean().item() for seed in range(200)]
        return max(means) - min(means)

    assert colour_jitter(grey, Random(0), 0.0).equal(grey)
    assert brightness_spread(2.0) > 1.6 * brightness_spread(1.0)
    assert 0.0 <= colour_jitter(torch.rand(3, 8, 8), Random(1), 3.0).min()


def test_without_calibration_the_base_threshold_of_each_way_of_detecting_is_kept(tmp_path):
    base = small_model()
    calibration = {"one view": {"f1": 0.7, "score_threshold": 0.3}, "four views": {"f1": 0.8, "score_threshold": 0.15}}
    base.metadata = replace(base.metadata, test_time_augmentation=True, score_threshold=0.15, metrics={"calibration": calibration})
    result = train(base, [scene(tmp_path, "s0", 0)], tmp_path / "out.safetensors", FAST)
    meta = load_checkpoint(result.checkpoint_path).metadata
    # Switching a retrained model to one view must not detect at the four views' lower threshold.
    assert meta.score_threshold_for(True) == 0.15 and meta.score_threshold_for(False) == 0.3
    assert meta.calibration_for(False).get("f1") is None, "the base model's figures are not claimed for the new one"


def test_a_stopped_training_goes_on_to_the_checkpoint_of_one_never_stopped(tmp_path):
    """Stopped in its second epoch and started again, training ends exactly where an unbroken run does."""
    items = [scene(tmp_path, f"s{i}", i, count=35, size=256) for i in range(3)]
    # Every part of the state in use: trunk and BatchNorm statistics, weight averaging, mosaics, style mixing.
    settings = whole_network(replace(FAST, epochs=3, weight_average_decay=0.9, mosaic_share=0.5, style_mixing=0.5))
    unbroken = train(small_model(), items, tmp_path / "unbroken.safetensors", settings, state_path=tmp_path / "unbroken.state")
    assert not (tmp_path / "unbroken.state").exists(), "a finished training leaves no state behind"

    steps = []
    stopped = train(small_model(), items, tmp_path / "resumed.safetensors", settings, state_path=tmp_path / "resumed.state",
                    progress=lambda fraction, message: steps.append(fraction), should_stop=lambda: len(steps) >= 4)
    assert stopped.cancelled and len(stopped.history) == 1 and (tmp_path / "resumed.state").exists()
    later_epochs = []
    resumed = train(small_model(), items, tmp_path / "resumed.safetensors", settings, state_path=tmp_path / "resumed.state",
                    on_epoch=later_epochs.append)
    assert [e.epoch for e in later_epochs] == [2, 3], "the first epoch is not trained again"
    assert [e.epoch for e in resumed.history] == [1, 2, 3]
    assert [e.train_loss for e in resumed.history] == [e.train_loss for e in unbroken.history]
    assert resumed.best_epoch == unbroken.best_epoch
    expected = load_checkpoint(tmp_path / "unbroken.safetensors")
    got = load_checkpoint(tmp_path / "resumed.safetensors")
    assert got.metadata == expected.metadata
    expected_weights = expected.network.state_dict()
    assert all(torch.equal(expected_weights[k], v) for k, v in got.network.state_dict().items())
    assert not (tmp_path / "resumed.state").exists()


def stopped_in_its_first_epoch(tmp_path, settings: TrainingSettings = FAST) -> tuple[list, Path]:
    """A training with ``settings`` stopped after four steps: its images and its saved state."""
    items = [scene(tmp_path, "s0", 0)]
    state = tmp_path / "out.state"
    steps = []
    train(small_model(), items, tmp_path / "out.safetensors", settings, state_path=state,
          progress=lambda fraction, message: steps.append(fraction), should_stop=lambda: len(steps) >= 4)
    assert state.exists()
    return items, state


def test_the_state_of_another_training_is_refused_with_what_to_do(tmp_path):
    items, state = stopped_in_its_first_epoch(tmp_path)
    with pytest.raises(TreecrownsError, match=r"another training \(it differs in: settings\).*delete the file"):
        train(small_model(), items, tmp_path / "out.safetensors", replace(FAST, learning_rate=0.01), state_path=state)
    state.write_bytes(b"not a training state")
    with pytest.raises(TreecrownsError, match="cannot be read.*delete it to train from the start"):
        train(small_model(), items, tmp_path / "out.safetensors", FAST, state_path=state)


def test_states_saved_before_the_bfloat16_setting_still_go_on_and_a_bfloat16_run_is_another_training(tmp_path):
    items, state = stopped_in_its_first_epoch(tmp_path, replace(FAST, bfloat16=False))
    # Off, the setting is not part of what identifies a training: a state saved before it existed matches.
    assert "bfloat16" not in torch.load(state, weights_only=True)["fingerprint"]["settings"]
    with pytest.raises(TreecrownsError, match=r"another training \(it differs in: settings\)"):
        train(small_model(), items, tmp_path / "out.safetensors", replace(FAST, bfloat16=True), state_path=state)


@pytest.mark.parametrize("has_units", [True, False])
def test_by_default_training_runs_in_bfloat16_only_where_the_device_has_bfloat16_units(tmp_path, monkeypatch, has_units):
    """Twice as fast where the units exist; on a CPU without them a bfloat16 step is several times slower."""
    import treecrowns.core.training as training

    monkeypatch.setattr(training, "computes_bfloat16", lambda device: has_units)
    _items, state = stopped_in_its_first_epoch(tmp_path)
    assert FAST.bfloat16 is None
    assert torch.load(state, weights_only=True)["fingerprint"]["settings"].get("bfloat16", False) is has_units


def test_a_raster_without_georeference_is_read_at_the_pixel_size_its_plot_list_gives(tmp_path):
    """The NeonTreeEvaluation export's plots carry no georeference: their 0.1 m comes from plots.csv."""
    crowns = [(20, 20, 40), (100, 60, 40)]
    path = write_raster(tmp_path / "plain.tif", 160, 120, crowns, crs=None)
    boxes = np.array([[c, r, c + s, r + s] for c, r, s in crowns], dtype=float)
    stated = ImageAnnotations(str(path), boxes, ("Tree",) * 2, pixel_size_m=0.1)
    [sample] = load_samples([stated], ("Tree",), 0.2)
    assert tuple(sample.image.shape) == (3, 60, 80) and np.allclose(sample.boxes.numpy(), boxes / 2)
    [unstated] = load_samples([replace(stated, pixel_size_m=None)], ("Tree",), 0.2)
    assert tuple(unstated.image.shape) == (3, 120, 160), "without one, the model's own resolution is assumed"


def test_training_patches_are_equalised_as_the_checkpoint_or_the_equalise_share_asks():
    from random import Random

    from treecrowns.core.contrast import equalise_luminance
    from treecrowns.core.patches import Sample, random_patch

    dull = torch.from_numpy(np.random.default_rng(0).uniform(90, 140, size=(3, 200, 200)).astype(np.float32))
    sample = Sample("dull", dull, torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64))
    fixed = TrainingSettings(augment=False)
    plain = random_patch(sample, 200, fixed, Random(0))[0]
    normalised = random_patch(sample, 200, fixed, Random(0), "equalised-luminance")[0]
    assert plain.max() < 0.6 and np.allclose(normalised.numpy() * 255, equalise_luminance(dull.numpy()), atol=0.01)

    def equalised_patches(share: float) -> int:
        settings = TrainingSettings(equalise_share=share, colour_jitter=0.0, scale_jitter=(1.0, 1.0))
        rng = Random(0)
        return sum(bool(random_patch(sample, 200, settings, rng)[0].max() > 0.9) for _ in range(100))

    assert equalised_patches(0.0) == 0 and equalised_patches(1.0) == 100 and 35 <= equalised_patches(0.5) <= 65


def test_a_retrained_model_that_scores_below_its_base_on_the_held_out_crowns_says_so(osbs_plot, tmp_path):
    """The bundled model retrained on boxes a quarter of each crown's size: on the plot's true crowns
    it is then worse than before, and the result says so instead of presenting it as the better model."""
    from treecrowns.gis.resources import BUNDLED_MODEL

    true_crowns = osbs_plot.crowns
    centres = (true_crowns.boxes[:, :2] + true_crowns.boxes[:, 2:]) / 2
    sides = (true_crowns.boxes[:, 2:] - true_crowns.boxes[:, :2]) / 8
    misdrawn = replace(true_crowns, boxes=np.hstack([centres - sides, centres + sides]))
    settings = TrainingSettings(epochs=2, steps_per_epoch=8, batch_size=4, learning_rate=0.05, device="cpu")
    result = train(load_checkpoint(BUNDLED_MODEL), [misdrawn], tmp_path / "worse.safetensors", settings,
                   validation_items=[true_crowns])
    assert result.base_metrics["f1"] > 0.4, "the base model finds OSBS_029's crowns"
    assert result.metrics["f1"] < result.base_metrics["f1"]
    assert result.worse_than_base
    assert "below the" in result.comparison_with_base() and "keep detecting with that model" in result.comparison_with_base()


def test_a_retrained_model_is_compared_with_its_base_only_when_enough_crowns_are_held_out(tmp_path):
    items = [scene(tmp_path, f"s{i}", i, count=35, size=256) for i in range(5)]
    measured = train(small_model(), items, tmp_path / "a.safetensors", FAST)
    assert set(measured.base_metrics) >= {"f1", "precision", "recall"}
    assert "for the model it started from" in measured.comparison_with_base()
    few = train(small_model(), [scene(tmp_path, "few", 7, count=6)], tmp_path / "b.safetensors", FAST)
    assert few.base_metrics == {} and few.comparison_with_base() is None and not few.worse_than_base
