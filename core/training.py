"""Training a detector on annotated rasters, with per-epoch validation and safe checkpoints.

Images are read once at the model's ground resolution (only the annotated
regions), then every step draws random patches from them: a random crop with
scale jitter (of one region, or of a mosaic of four), flips and transposes, and
colour jitter. After every epoch the
model is scored on the held-out images (whole images, never random boxes) with
DeepForest's protocol; the best epoch is written to the output checkpoint
atomically, together with the score threshold that gave its best F1.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from shapely.geometry import box as rectangle

from .annotations import ImageAnnotations, annotated_areas, crowns_centred_in, crowns_in_areas, outline_of
from .areas import area_mask
from .boxes import crop_boxes, merge_window_detections
from .contrast import Contrast, equalise_luminance, normalise_contrast
from .checkpoint import LoadedModel, ModelMetadata, save_checkpoint, way_of_detecting
from .errors import AnnotationError, Cancelled, CheckpointError, TreecrownsError
from .evaluation import DEFAULT_IOU_THRESHOLD, evaluate
from .prediction import (
    DetectionSettings, Device, ProgressCallback, StopCheck, fit_input_size, predict_images, resolve_device, scales_of_run,
)
from .raster import RasterReader
from .style_mixing import attach_style_mixing
from .tiling import window_grid
from .training_state import load_training_state, remove_training_state, save_training_state
from .views import fuse_scales

# An epoch is at least this many steps, so that a few corrected plots still train the model.
_MIN_STEPS_PER_EPOCH = 20
# Below this many validation crowns, epochs are not chosen and thresholds not tuned on them.
_MIN_VALIDATION_CROWNS = 30
# Below this many crowns, fine-tuning often made the model worse on the site's other plots.
_FEW_CROWNS = 15
CALIBRATION_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
# Calibration keeps four fused views unless one view's F1 on the held-out plots is higher by more
# than this. On a dozen plots the two ways' F1 differ by a few hundredths from noise alone,
# and four views carried better to sites the model had never seen: over fourteen leave-one-out
# checkpoints they were up to 0.08 better there and at most 0.022 worse, while the calibrated
# choice picked one view four times on held-out margins of 0.011 to 0.023 (model card).
ONE_VIEW_MARGIN = 0.03
_VALIDATION_NMS = 0.3


# Box regression losses torchvision's RetinaNet head computes (TrainingSettings.box_loss).
BOX_LOSSES = ("l1", "giou")


@dataclass(frozen=True)
class TrainingSettings:
    """How to train. The defaults suit fine-tuning a trained model on a few hundred corrected crowns."""

    epochs: int = 10
    batch_size: int = 8
    # 0.002: on a new site it keeps most of 0.005's gain from one corrected plot (+0.122 against
    # +0.131), and on a site the model knows it does half the harm (model card, retraining).
    learning_rate: float = 0.002
    weight_decay: float = 1e-4
    steps_per_epoch: int | None = None
    validation_share: float = 0.2
    warmup_steps: int = 50
    scale_jitter: tuple[float, float] = (0.8, 1.25)
    # Multiplies the colour jitter's ranges (brightness and contrast +-25 %, saturation +-30 %,
    # per-channel gain +-10 % at 1.0): sites and flights differ in colour.
    colour_jitter: float = 1.0
    # Share of training patches whose luminance histogram is equalised (core.contrast) before the
    # colour jitter, so that the network sees raw and contrast-equalised imagery alike. Unlike a
    # checkpoint's contrast normalisation, nothing is done to the pixels at detection. 0: off.
    equalise_share: float = 0.0
    # Share of training patches read at the model's own resolution, not resized. Every other
    # patch is resized to a random zoom, which softens it, while detection at 1 x reads
    # pixels that were never resized.
    native_share: float = 0.0
    # Share of training patches cut from a mosaic of four random training regions (2 x 2 patches)
    # instead of from one region: a zoom above 1 (crowns smaller than in the imagery) then shows
    # more trees instead of a black border, and one patch mixes plots and sites.
    mosaic_share: float = 0.0
    augment: bool = True
    # Fine-tuning on one site: keep the trunk and its BatchNorm statistics as learnt on many
    # sites, and train only the FPN and heads. One corrected plot is too little to retrain
    # the trunk; doing so lost F1 on the site's other plots (model/retraining_experiment.py).
    # Training from scratch needs freeze_batchnorm=False and trunk_learning_rate_factor=1.
    freeze_batchnorm: bool = True
    trunk_learning_rate_factor: float = 0.0
    # Above 0: validate and save a running average of the weights and BatchNorm statistics
    # (exponential, this decay per step) instead of the latest weights. An average over many
    # steps sits in a flatter place than any one step, which tends to carry better to new data.
    weight_average_decay: float = 0.0
    # Share of training steps on which the trunk's early feature statistics are mixed between
    # patches (core.style_mixing), so that the detector cannot lean on a site's colours and
    # textures. 0: off.
    style_mixing: float = 0.0
    # How box regression is scored: "l1" on the offsets from the anchor (torchvision's RetinaNet
    # default), or "giou", one minus the generalised IoU of the decoded box with the crown, which
    # scores the overlap that matching at IoU 0.4 asks for.
    box_loss: str = "l1"
    seed: int = 0
    device: Device = Device.AUTO

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            problems.append(f"learning rate must be above 0, got {self.learning_rate}")
        if not 0 <= self.validation_share < 1:
            problems.append(f"validation share must be a fraction from 0 to below 1, got {self.validation_share}")
        low, high = self.scale_jitter
        if not 0 < low <= high:
            problems.append(f"scale jitter must be two zooms 0 < low <= high, got {self.scale_jitter}")
        if not 0 <= self.colour_jitter <= 3:
            problems.append(f"colour jitter must be a strength from 0 to 3 (1 is the default), got {self.colour_jitter}")
        if not 0 <= self.equalise_share <= 1:
            problems.append(f"equalise share must be a fraction from 0 to 1, got {self.equalise_share}")
        if not 0 <= self.native_share <= 1:
            problems.append(f"native share must be a fraction from 0 to 1, got {self.native_share}")
        if not 0 <= self.mosaic_share <= 1:
            problems.append(f"mosaic share must be a fraction from 0 to 1, got {self.mosaic_share}")
        if not 0 <= self.weight_average_decay < 1:
            problems.append(f"weight average decay must be from 0 (off) to below 1, got {self.weight_average_decay}")
        if not 0 <= self.style_mixing <= 1:
            problems.append(f"style mixing must be a share of steps from 0 (off) to 1, got {self.style_mixing}")
        if self.box_loss not in BOX_LOSSES:
            problems.append(f"box loss must be one of {', '.join(BOX_LOSSES)}, got {self.box_loss!r}")
        if problems:
            raise TreecrownsError("; ".join(problems))


def whole_network(settings: TrainingSettings) -> TrainingSettings:
    """``settings`` training every layer and BatchNorm statistic: from scratch, or with thousands of crowns."""
    return replace(settings, freeze_batchnorm=False, trunk_learning_rate_factor=1.0)


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; validation fields are None when nothing was held out."""

    epoch: int
    train_loss: float
    classification_loss: float
    regression_loss: float
    precision: float | None
    recall: float | None
    f1: float | None
    score_threshold: float | None
    seconds: float
    saved: bool


@dataclass(frozen=True)
class TrainingResult:
    checkpoint_path: str
    history: tuple[EpochReport, ...]
    best_epoch: int
    cancelled: bool = False
    metrics: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass
class _Sample:
    """One annotated region at model resolution."""

    name: str
    image: torch.Tensor  # (3, H, W) float32, 0-255
    boxes: torch.Tensor  # (N, 4) model pixels
    labels: torch.Tensor  # (N,) class index


def load_samples(items: Sequence[ImageAnnotations], labels: Sequence[str], ground_resolution_m: float) -> list[_Sample]:
    """Read the annotated regions of each raster at the model's resolution.

    Raises:
        AnnotationError: If an annotation's label is not one of ``labels``.
    """
    index = {name: i for i, name in enumerate(labels)}
    samples = []
    for item in items:
        unknown = sorted(set(item.labels) - set(index))
        if unknown:
            raise AnnotationError(f"{item.image_path}: label(s) {unknown} are not among the model's labels {list(labels)}")
        with RasterReader(item.image_path) as reader:
            info = reader.info
            res = info.ground_resolution_m or (item.pixel_size_m or ground_resolution_m,) * 2
            sx, sy = res[0] / ground_resolution_m, res[1] / ground_resolution_m
            for window, area in annotated_areas(item, info.width, info.height):
                out_w, out_h = max(1, round(window.width * sx)), max(1, round(window.height * sy))
                image, _valid = reader.read(window, out_w, out_h)
                crowns, outline = item, outline_of(area)
                if outline is not None:
                    # Only the polygon is known: the rest of its bounding box is blacked out, like nodata.
                    crowns = crowns_centred_in(item, outline)
                    image = image * area_mask(outline, window, out_w, out_h)[None]
                boxes = crowns.boxes.copy()
                boxes[:, [0, 2]] = (boxes[:, [0, 2]] - window.col_off) * (out_w / window.width)
                boxes[:, [1, 3]] = (boxes[:, [1, 3]] - window.row_off) * (out_h / window.height)
                keep_boxes, keep = crop_boxes(boxes, 0, 0, out_w, out_h)
                samples.append(
                    _Sample(
                        name=f"{Path(item.image_path).name}@{window.col_off},{window.row_off}",
                        image=torch.from_numpy(image),
                        boxes=torch.as_tensor(keep_boxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.as_tensor([index[crowns.labels[i]] for i in np.flatnonzero(keep)], dtype=torch.int64),
                    )
                )
    return samples


def _patch_source(
    samples: Sequence[_Sample], index: int, weights: Sequence[float], patch: int, settings: TrainingSettings, rng: random.Random
) -> _Sample:
    """The region a training patch is cut from: ``samples[index]``, or now and then a mosaic of four."""
    # Without a mosaic share no extra number is drawn, so earlier recipes keep their random draws.
    if settings.augment and settings.mosaic_share and rng.random() < settings.mosaic_share:
        return mosaic_of_samples([samples[i] for i in rng.choices(range(len(samples)), weights, k=4)], patch, rng)
    return samples[index]


def mosaic_of_samples(samples: Sequence[_Sample], patch: int, rng: random.Random) -> _Sample:
    """Four regions side by side in a 2 x 2 grid of patch-sized cells, each cut to at most one cell."""
    if len(samples) != 4:
        raise ValueError(f"a mosaic needs four regions, got {len(samples)}")
    image = torch.zeros((3, 2 * patch, 2 * patch))
    boxes, labels = [], []
    for cell, sample in enumerate(samples):
        left, top = (cell % 2) * patch, (cell // 2) * patch
        region, kept, kept_labels = _random_cut(sample, patch, rng)
        image[:, top : top + patch, left : left + patch] = region
        boxes.append(torch.as_tensor(kept, dtype=torch.float32).reshape(-1, 4) + torch.tensor([left, top, left, top]))
        labels.append(kept_labels)
    names = "+".join(sample.name for sample in samples)
    return _Sample(name=f"mosaic of {names}", image=image, boxes=torch.cat(boxes), labels=torch.cat(labels))


def _random_cut(sample: _Sample, size: int, rng: random.Random) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """A random size x size cut of the region (0-255, black where the region is smaller) and the crowns kept in it."""
    _, height, width = sample.image.shape
    x0 = rng.randint(0, max(0, width - size))
    y0 = rng.randint(0, max(0, height - size))
    x1, y1 = min(width, x0 + size), min(height, y0 + size)
    region = torch.zeros((3, size, size))
    region[:, : y1 - y0, : x1 - x0] = sample.image[:, y0:y1, x0:x1]
    boxes, keep = crop_boxes(sample.boxes.numpy(), x0, y0, x1, y1)
    labels = sample.labels[torch.as_tensor(keep, dtype=torch.bool)] if len(keep) else sample.labels[:0]
    return region, boxes, labels


def _random_patch(
    sample: _Sample, patch: int, settings: TrainingSettings, rng: random.Random, contrast: str = Contrast.NONE.value
) -> tuple[torch.Tensor, dict]:
    """A patch x patch training image (0-1) and its target, with augmentation.

    ``contrast`` is the model's own normalisation (core.contrast), applied to every patch as
    detection applies it to every window; ``settings.equalise_share`` equalises some patches
    as augmentation only.
    """
    scale = _patch_zoom(settings, rng)
    crop = max(8, round(patch * scale))
    region, boxes, labels = _random_cut(sample, crop, rng)
    if crop != patch:
        region = F.interpolate(region[None], size=(patch, patch), mode="bilinear", align_corners=False)[0]
    # Without an equalise share no extra number is drawn, so earlier recipes keep their random draws.
    if settings.augment and settings.equalise_share and rng.random() < settings.equalise_share:
        region = torch.from_numpy(equalise_luminance(region.numpy()))
    if contrast != Contrast.NONE.value:
        region = torch.from_numpy(normalise_contrast(region.numpy(), contrast))
    image = region / 255.0
    boxes_t = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4) * (patch / crop)
    if settings.augment:
        image, boxes_t = _flip_and_transpose(image, boxes_t, patch, rng)
        image = _colour_jitter(image, rng, settings.colour_jitter)
    return image, {"boxes": boxes_t, "labels": labels}


def _patch_zoom(settings: TrainingSettings, rng: random.Random) -> float:
    """How many image pixels one patch pixel covers: 1 when unaugmented or drawn as native."""
    if not settings.augment:
        return 1.0
    # Without a native share no extra number is drawn, so earlier recipes keep their random draws.
    if settings.native_share and rng.random() < settings.native_share:
        return 1.0
    return rng.uniform(*settings.scale_jitter)


def _flip_and_transpose(image: torch.Tensor, boxes: torch.Tensor, size: int, rng: random.Random):
    if rng.random() < 0.5:
        image = image.flip(-1)
        boxes = torch.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], dim=1)
    if rng.random() < 0.5:
        image = image.flip(-2)
        boxes = torch.stack([boxes[:, 0], size - boxes[:, 3], boxes[:, 2], size - boxes[:, 1]], dim=1)
    if rng.random() < 0.5:
        image = image.transpose(-1, -2)
        boxes = boxes[:, [1, 0, 3, 2]]
    return image.contiguous(), boxes


def _colour_jitter(image: torch.Tensor, rng: random.Random, strength: float = 1.0) -> torch.Tensor:
    """Brightness, contrast, saturation and per-channel gain: sites and flights differ in colour."""
    brightness = rng.uniform(1 - 0.25 * strength, 1 + 0.25 * strength)
    contrast = rng.uniform(1 - 0.25 * strength, 1 + 0.25 * strength)
    saturation = rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength)
    gains = torch.tensor([rng.uniform(1 - 0.1 * strength, 1 + 0.1 * strength) for _ in range(3)])[:, None, None]
    grey = image.mean(dim=0, keepdim=True)
    image = grey + (image - grey) * saturation
    image = (image - image.mean()) * contrast + image.mean()
    return (image * brightness * gains).clamp(0.0, 1.0)


def predict_sample(model: LoadedModel, image: np.ndarray, device: torch.device, overlap: float = 0.15) -> dict[str, np.ndarray]:
    """Detections on an in-memory image at model resolution, tiled like a raster.

    With views, the image is also seen at each of the checkpoint's view scales and the
    scales are fused, as ``core.prediction.detect`` does on a raster.
    """
    scales = scales_of_run(model, DetectionSettings())
    found = [_predict_at_scale(model, image, device, overlap, scale) for scale in scales]
    boxes, scores, labels = fuse_scales(found, model.network.score_thresh)
    return {"boxes": boxes, "scores": scores, "labels": labels}


def _predict_at_scale(
    model: LoadedModel, image: np.ndarray, device: torch.device, overlap: float, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes, scores, labels) on ``image`` read ``scale`` times coarser, boxes in the image's own pixels."""
    _, full_height, full_width = image.shape
    if scale != 1.0:
        size = (max(1, round(full_height / scale)), max(1, round(full_width / scale)))
        resized = F.interpolate(torch.from_numpy(np.ascontiguousarray(image))[None].float(), size=size, mode="bilinear",
                                antialias=True, align_corners=False)
        image = resized[0].numpy()
    patch = model.metadata.patch_size
    _, height, width = image.shape
    windows = window_grid(width, height, patch, overlap)
    crops = []
    for w in windows:
        padded = np.zeros((3, patch, patch), dtype=np.float32)
        padded[:, : w.height, : w.width] = image[:, w.row_off : w.row_end, w.col_off : w.col_end]
        crops.append(padded)
    outputs = predict_images(model, crops, device, model.metadata.test_time_augmentation)
    boxes = np.concatenate([o["boxes"] + [w.col_off, w.row_off, w.col_off, w.row_off] for o, w in zip(outputs, windows)])
    scores = np.concatenate([o["scores"] for o in outputs])
    labels = np.concatenate([o["labels"] for o in outputs])
    keep = merge_window_detections(boxes, scores, labels, np.zeros(len(boxes), dtype=bool), _VALIDATION_NMS)
    back = np.array([full_width / width, full_height / height, full_width / width, full_height / height])
    return boxes[keep].reshape(-1, 4) * back, scores[keep], labels[keep]


def validate(
    model: LoadedModel, samples: Sequence[_Sample], device: torch.device, fixed_threshold: float | None = None
) -> tuple[dict, float]:
    """Best F1 over a range of score thresholds and that threshold, or F1 at ``fixed_threshold``."""
    model.network.eval()
    model.network.score_thresh = min(CALIBRATION_THRESHOLDS)
    model.network.nms_thresh = _VALIDATION_NMS
    predictions = [predict_sample(model, s.image.numpy(), device) for s in samples]
    references = {s.name: s.boxes.numpy() for s in samples}
    best, best_threshold = None, CALIBRATION_THRESHOLDS[0]
    for threshold in (CALIBRATION_THRESHOLDS if fixed_threshold is None else (fixed_threshold,)):
        kept = {s.name: p["boxes"][p["scores"] >= threshold] for s, p in zip(samples, predictions)}
        result = evaluate(kept, references, DEFAULT_IOU_THRESHOLD).as_dict()
        if best is None or result["f1"] > best["f1"]:
            best, best_threshold = result, threshold
    return best, best_threshold


def calibrate_inference(
    model: LoadedModel, items: Sequence[ImageAnnotations], device: Device = Device.AUTO
) -> tuple[LoadedModel, dict[str, dict]]:
    """``model`` with the score threshold and test-time augmentation choice that score best on ``items``.

    Both ways of detecting (one view, four fused turned views) are scored on the held-out
    ``items`` over the same range of thresholds, as training chooses its threshold; four views
    are kept unless one view is clearly better (``preferred_way``).

    Returns:
        The model with updated metadata, and the best figures of each way
        ("one view", "four views"), each with its "score_threshold".
    """
    torch_device, _note = resolve_device(device)
    model.network.to(torch_device)
    fit_input_size(model, model.metadata.patch_size)
    samples = load_samples(items, model.metadata.labels, model.metadata.ground_resolution_m)
    original = model.metadata
    figures: dict[str, dict] = {}
    candidates: dict[str, ModelMetadata] = {}
    for augment in (False, True):
        model.metadata = replace(original, test_time_augmentation=augment)
        metrics, threshold = validate(model, samples, torch_device)
        figures[way_of_detecting(augment)] = {**metrics, "score_threshold": threshold}
        candidates[way_of_detecting(augment)] = replace(model.metadata, score_threshold=threshold)
    winner = preferred_way(figures)
    model.metadata = replace(candidates[winner], metrics={**original.metrics, "calibration": figures})
    return model, figures


def preferred_way(figures: dict[str, dict]) -> str:
    """The way of detecting calibration keeps: four views, unless one view is clearly better (``ONE_VIEW_MARGIN``)."""
    four, one = way_of_detecting(True), way_of_detecting(False)
    return one if figures[one]["f1"] > figures[four]["f1"] + ONE_VIEW_MARGIN else four


def _thresholds_only(calibration: dict) -> dict:
    """Each way of detecting's score threshold from a calibration record, without its figures."""
    return {way: {"score_threshold": row["score_threshold"]} for way, row in calibration.items() if "score_threshold" in row}


def split_validation(items: Sequence[ImageAnnotations], share: float, seed: int) -> tuple[list, list]:
    """Hold out whole images; with a single image, hold out a strip of each annotated area.

    With two or more images, ``share`` of them (at least one) is held out. A single image
    (one corrected orthophoto, the usual case in the GUI) keeps the left ``1 - share`` of
    each annotated area for training and validates on the right-hand strip.
    """
    items = list(items)
    if share <= 0:
        return items, []
    if len(items) >= 2:
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)
        count = min(len(items) - 1, max(1, round(len(items) * share)))
        held = set(order[:count])
        return [it for i, it in enumerate(items) if i not in held], [it for i, it in enumerate(items) if i in held]
    item = items[0]
    with RasterReader(item.image_path) as reader:
        width, height = reader.info.width, reader.info.height
    train_regions, val_regions = [], []
    for w, area in annotated_areas(item, width, height):
        cut = w.col_off + round(w.width * (1.0 - share))
        left, right = rectangle(w.col_off, w.row_off, cut, w.row_end), rectangle(cut, w.row_off, w.col_end, w.row_end)
        train_regions.append(left if area is None else area.intersection(left))
        val_regions.append(right if area is None else area.intersection(right))
    return (
        [replace(item, regions=tuple(a for a in train_regions if a.area > 0))],
        [replace(item, regions=tuple(a for a in val_regions if a.area > 0))],
    )


def _parameter_groups(network: torch.nn.Module, settings: TrainingSettings) -> list[dict]:
    """The trunk's weights at ``trunk_learning_rate_factor`` times the learning rate, the rest at 1x.

    A factor of 0 freezes the trunk (no gradients, so each step is cheaper). Every call
    sets ``requires_grad`` on all weights, so a model trained twice follows the latest settings.
    LambdaLR scales each group's own starting rate, so the ratio holds through the schedule.
    """
    trunk = getattr(getattr(network, "backbone", None), "body", None)
    trunk_ids = {id(p) for p in trunk.parameters()} if trunk is not None else set()
    trunk_params = [p for p in network.parameters() if id(p) in trunk_ids]
    other_params = [p for p in network.parameters() if id(p) not in trunk_ids]
    for p in other_params:
        p.requires_grad_(True)
    for p in trunk_params:
        p.requires_grad_(settings.trunk_learning_rate_factor > 0)
    groups = [{"params": other_params}]
    if trunk_params and settings.trunk_learning_rate_factor > 0:
        groups.append({"params": trunk_params, "lr": settings.learning_rate * settings.trunk_learning_rate_factor})
    return groups


def _weight_average(network: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """A copy of ``network`` that follows its weights and BatchNorm statistics as an exponential average.

    The decay ramps up over the first steps ((1 + n) / (10 + n), capped at ``decay``), so that
    the random starting weights do not linger in the average for thousands of steps.
    """

    def average(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        step_decay = min(decay, (1 + int(count)) / (10 + int(count)))
        return averaged * step_decay + current * (1 - step_decay)

    averaged = torch.optim.swa_utils.AveragedModel(network, avg_fn=average, use_buffers=True)
    averaged.module.eval()
    return averaged


def trainable_crowns(items: Sequence[ImageAnnotations]) -> int:
    """How many crowns training learns from: all of them, or those centred in the reviewed areas."""
    return sum(int(crowns_in_areas(item).sum()) for item in items)


def check_labels(model: LoadedModel, items: Sequence[ImageAnnotations]) -> None:
    """Raise a clear error when the annotations name classes the model does not have."""
    found = sorted({label for item in items for label in item.labels})
    unknown = [label for label in found if label not in model.metadata.labels]
    if unknown:
        raise CheckpointError(
            f"the annotations use {len(found)} class(es) {found} but the base model has {len(model.metadata.labels)} "
            f"{list(model.metadata.labels)}; fix the 'label' values, or let training add the new classes "
            "(NEW_LABELS in treecrowns:train, 'Add new labels' in the Train dialog)"
        )


def _training_fingerprint(
    model: LoadedModel, settings: TrainingSettings, train_samples: Sequence[_Sample], val_samples: Sequence[_Sample], steps: int
) -> dict:
    """What makes two trainings the same one: settings, images, model and its starting weights.

    The device is left out: a training stopped on a GPU may go on on the CPU.
    """
    digest = hashlib.sha256()
    for name, tensor in model.network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    meta = model.metadata
    return {
        "settings": {k: v for k, v in vars(settings).items() if k != "device"},
        "steps_per_epoch": steps,
        "train_images": [s.name for s in train_samples],
        "validation_images": [s.name for s in val_samples],
        "labels": list(meta.labels),
        "ground_resolution_m": meta.ground_resolution_m,
        "contrast": meta.contrast,
        "patch_size": meta.patch_size,
        "starting_weights": digest.hexdigest(),
    }


def _training_and_validation_samples(
    meta: ModelMetadata,
    train_items: Sequence[ImageAnnotations],
    validation_items: Sequence[ImageAnnotations] | None,
    settings: TrainingSettings,
) -> tuple[list[_Sample], list[_Sample], list[str]]:
    """The samples to train and to validate on, and a note when the held-out share was too small to keep.

    Without ``validation_items``, ``settings.validation_share`` of the rasters is held out;
    a handful of held-out crowns measure nothing, so then they are trained on instead.
    """
    def samples(items: Sequence[ImageAnnotations]) -> list[_Sample]:
        return load_samples(items, meta.labels, meta.ground_resolution_m) if items else []

    if validation_items is not None:
        return samples(train_items), samples(validation_items), []
    kept, held = split_validation(train_items, settings.validation_share, settings.seed)
    val_samples = samples(held)
    held_crowns = sum(len(sample.boxes) for sample in val_samples)
    if held and held_crowns < _MIN_VALIDATION_CROWNS:
        note = (
            f"only {held_crowns} crowns would have been held out for validation (at least {_MIN_VALIDATION_CROWNS} "
            "are needed for a meaningful figure), so all crowns were used for training and the base "
            "model's score threshold was kept; review more area to get validation figures"
        )
        return samples(train_items), [], [note]
    return samples(kept), val_samples, []


def _warmup_then_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning rate's factor at each step: a linear warm-up, then a cosine decay to zero at the last step."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress_share = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_share)))
    return factor


def train(
    model: LoadedModel,
    train_items: Sequence[ImageAnnotations],
    output_path: str | Path,
    settings: TrainingSettings = TrainingSettings(),
    validation_items: Sequence[ImageAnnotations] | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    state_path: str | Path | None = None,
) -> TrainingResult:
    """Train ``model`` in place and write its best state to ``output_path``.

    Args:
        model: The starting point (a loaded checkpoint or a new random model).
        train_items: Annotated rasters. If ``validation_items`` is None, a share of
            them (``settings.validation_share``) is held out for validation, unless that
            share holds too few crowns to measure anything (then all are trained on and
            ``TrainingResult.notes`` says so).
        output_path: Where the checkpoint goes; written only when an epoch improves.
        settings: Schedule, augmentation and device.
        validation_items: Explicit held-out rasters.
        progress: Called with (fraction, message) after every step.
        should_stop: Polled every step; on True training stops and the best checkpoint so far stays.
        on_epoch: Called after every epoch with its report.
        state_path: Where to keep the training's full state after every epoch
            (``core.training_state``). If the file already holds the state of this same
            training, stopped or cancelled, training goes on from the epoch after it and
            the history holds every epoch; the file is removed when training completes.

    Raises:
        AnnotationError: If there is nothing to train on.
        CheckpointError: If the annotations' classes do not fit the model.
        Cancelled: If stopped before any checkpoint was written.
        TreecrownsError: If ``state_path`` holds another training's state.
    """
    crowns = trainable_crowns(train_items)
    if crowns == 0:
        drawn = sum(len(item.labels) for item in train_items)
        if drawn:
            raise AnnotationError(
                f"none of the {drawn} annotated crowns lies inside the reviewed areas, so there is nothing to train on; "
                "mark the areas you reviewed, or train without areas"
            )
        raise AnnotationError("there are no annotated crowns to train on; draw or import some boxes first")
    check_labels(model, train_items)
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    device, _note = resolve_device(settings.device)
    meta = model.metadata
    notes: list[str] = []
    if crowns < _FEW_CROWNS:
        notes.append(
            f"only {crowns} crowns to learn from: retraining on fewer than {_FEW_CROWNS} often makes the model "
            "worse on the rest of the site; review a larger area and compare the two models with Evaluate"
        )
    train_samples, val_samples, split_note = _training_and_validation_samples(meta, train_items, validation_items, settings)
    notes.extend(split_note)
    patch = meta.patch_size
    weights = [max(1.0, s.image.shape[1] * s.image.shape[2] / patch**2) for s in train_samples]
    steps = settings.steps_per_epoch or max(_MIN_STEPS_PER_EPOCH, math.ceil(2 * sum(weights) / settings.batch_size))
    total_steps = steps * settings.epochs

    # channels_last: the convolutions' backward pass runs about 1.4x faster on CPU (benchmarked).
    network = model.network.to(device=device, memory_format=torch.channels_last)
    # torchvision's RetinaNet reads its box loss from this attribute; its constructor takes none.
    network.head.regression_head._loss_type = settings.box_loss
    fit_input_size(model, patch)
    # What is validated and saved: the network itself, or a running average of it.
    averaged = _weight_average(network, settings.weight_average_decay) if settings.weight_average_decay else None
    kept_network = network if averaged is None else averaged.module
    param_groups = _parameter_groups(network, settings)
    params = [p for group in param_groups for p in group["params"]]
    optimiser = torch.optim.SGD(param_groups, lr=settings.learning_rate, momentum=0.9, weight_decay=settings.weight_decay)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_then_cosine(settings.warmup_steps, total_steps))
    history: list[EpochReport] = []
    calibrate = sum(len(sample.boxes) for sample in val_samples) >= _MIN_VALIDATION_CROWNS
    fixed = None if calibrate else meta.score_threshold
    # Without calibration the base model's threshold for each way of detecting (one view, views)
    # is kept, not its figures: they describe the base model.
    inherited = {} if calibrate else _thresholds_only(meta.metrics.get("calibration", {}))
    best_f1, best_epoch, saved_any = -1.0, 0, False
    best_metrics: dict = {}
    step = 0
    # Drawn from their own generator: turning style mixing on leaves the patches' draws as they were.
    mixing_rng = np.random.default_rng(settings.seed + 1)
    fingerprint = _training_fingerprint(model, settings, train_samples, val_samples, steps) if state_path else {}
    resumed = load_training_state(state_path, fingerprint) if state_path else None
    if resumed is not None:
        if resumed["saved_any"] and not Path(output_path).exists():
            raise TreecrownsError(
                f"the training state {state_path} goes with the checkpoint {output_path}, which is gone; "
                "delete the state to train from the start"
            )
        network.load_state_dict(resumed["network"])
        if averaged is not None:
            averaged.load_state_dict(resumed["averaged"])
        optimiser.load_state_dict(resumed["optimiser"])
        scheduler.load_state_dict(resumed["scheduler"])
        rng.setstate(resumed["python_random"])
        torch.set_rng_state(resumed["torch_random"])
        mixing_rng.bit_generator.state = resumed["mixing_random"]
        step, best_f1, best_epoch, saved_any = resumed["step"], resumed["best_f1"], resumed["best_epoch"], resumed["saved_any"]
        best_metrics = resumed["best_metrics"]
        model.metadata = ModelMetadata.from_json(resumed["metadata"])
        history = [EpochReport(**report) for report in resumed["history"]]
    first_epoch = len(history) + 1
    mixing = attach_style_mixing(network, settings.style_mixing, mixing_rng) if settings.style_mixing else []
    try:
        for epoch in range(first_epoch, settings.epochs + 1):
            started = time.perf_counter()
            network.train()
            if settings.freeze_batchnorm:
                for module in network.modules():
                    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                        module.eval()
            sums = np.zeros(3)
            for _ in range(steps):
                if should_stop is not None and should_stop():
                    if not saved_any:
                        raise Cancelled("training was cancelled before the first epoch finished; no checkpoint was written")
                    return TrainingResult(
                        str(output_path), tuple(history), best_epoch, cancelled=True, metrics=best_metrics, notes=tuple(notes)
                    )
                chosen = rng.choices(range(len(train_samples)), weights, k=settings.batch_size)
                batch = [
                    _random_patch(_patch_source(train_samples, i, weights, patch, settings, rng), patch, settings, rng,
                                  model.metadata.contrast)
                    for i in chosen
                ]
                images = [img.to(device) for img, _ in batch]
                targets = [{k: v.to(device) for k, v in t.items()} for _, t in batch]
                losses = network(images, targets)
                loss = losses["classification"] + losses["bbox_regression"]
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 10.0)
                optimiser.step()
                scheduler.step()
                if averaged is not None:
                    averaged.update_parameters(network)
                step += 1
                sums += [loss.item(), losses["classification"].item(), losses["bbox_regression"].item()]
                if progress is not None:
                    progress(step / total_steps, f"epoch {epoch}/{settings.epochs}, step {step}/{total_steps}, loss {loss.item():.3f}")
            means = sums / steps
            kept_model = LoadedModel(kept_network, model.metadata)
            metrics, threshold = validate(kept_model, val_samples, device, fixed) if val_samples else ({}, None)
            f1 = metrics.get("f1")
            # Too few validation crowns make F1 noise: then keep the latest epoch and the base threshold.
            improved = f1 is None or not calibrate or f1 > best_f1
            if improved:
                best_f1, best_epoch = (f1 if f1 is not None else best_f1), epoch
                best_metrics = {**metrics, "epoch": epoch} if metrics else {}
                new_meta = replace(
                    meta,
                    score_threshold=threshold if threshold is not None else meta.score_threshold,
                    metrics={**({"validation": best_metrics} if metrics else {}),
                             **({"calibration": inherited} if inherited else {})},
                )
                save_checkpoint(LoadedModel(kept_network, new_meta), output_path)
                model.metadata = new_meta
                saved_any = True
            report = EpochReport(
                epoch, float(means[0]), float(means[1]), float(means[2]),
                metrics.get("precision"), metrics.get("recall"), f1, threshold,
                time.perf_counter() - started, improved,
            )
            history.append(report)
            if state_path:
                save_training_state(state_path, fingerprint, {
                    "network": network.state_dict(),
                    "averaged": averaged.state_dict() if averaged is not None else {},
                    "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "python_random": rng.getstate(),
                    "torch_random": torch.get_rng_state(),
                    "mixing_random": mixing_rng.bit_generator.state,
                    "step": step, "best_f1": best_f1, "best_epoch": best_epoch, "saved_any": saved_any,
                    "best_metrics": best_metrics,
                    "metadata": model.metadata.to_json(),
                    "history": [vars(r) for r in history],
                })
            if on_epoch is not None:
                on_epoch(report)
        if state_path:
            remove_training_state(state_path)
        return TrainingResult(str(output_path), tuple(history), best_epoch, metrics=best_metrics, notes=tuple(notes))
    finally:
        for hook in mixing:
            hook.remove()
