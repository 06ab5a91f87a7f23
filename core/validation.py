"""Scoring a model on held-out regions while it trains, and choosing how it detects afterwards.

Held-out regions are whole images (never random boxes), tiled like a raster and scored with
DeepForest's protocol over a range of score thresholds; calibration then chooses between one
view and four fused turned views, and the threshold for each.
"""

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from .annotations import ImageAnnotations
from .boxes import merge_window_detections
from .checkpoint import LoadedModel, ModelMetadata, way_of_detecting
from .evaluation import DEFAULT_IOU_THRESHOLD, evaluate
from .patches import Sample, load_samples
from .prediction import (
    DetectionSettings,
    Device,
    fit_input_size,
    predict_images,
    resolve_device,
    scales_of_run,
)
from .tiling import window_grid
from .views import fuse_scales

CALIBRATION_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
# Calibration keeps four fused views unless one view's F1 on the held-out plots is higher by more
# than this. On a dozen plots the two ways' F1 differ by a few hundredths from noise alone,
# and four views carried better to sites the model had never seen: over fourteen leave-one-out
# checkpoints they were up to 0.08 better there and at most 0.022 worse, while the calibrated
# choice picked one view four times on held-out margins of 0.011 to 0.023 (model/DIARY.md).
ONE_VIEW_MARGIN = 0.03
_VALIDATION_NMS = 0.3


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
    model: LoadedModel, samples: Sequence[Sample], device: torch.device, fixed_threshold: float | None = None
) -> tuple[dict, float]:
    """Best F1 over a range of score thresholds and that threshold, or F1 at ``fixed_threshold``."""
    predictions = _predictions(model, samples, device)
    references = {s.name: s.boxes.numpy() for s in samples}
    best, best_threshold = None, CALIBRATION_THRESHOLDS[0]
    for threshold in (CALIBRATION_THRESHOLDS if fixed_threshold is None else (fixed_threshold,)):
        kept = {s.name: p["boxes"][p["scores"] >= threshold] for s, p in zip(samples, predictions)}
        result = evaluate(kept, references, DEFAULT_IOU_THRESHOLD).as_dict()
        if best is None or result["f1"] > best["f1"]:
            best, best_threshold = result, threshold
    return best, best_threshold


def boxes_found(model: LoadedModel, samples: Sequence[Sample], device: torch.device, threshold: float) -> dict[str, np.ndarray]:
    """The boxes ``model`` finds on each sample at ``threshold``, by sample name, detected as ``validate`` detects."""
    predictions = _predictions(model, samples, device)
    return {s.name: p["boxes"][p["scores"] >= threshold] for s, p in zip(samples, predictions)}


def _predictions(model: LoadedModel, samples: Sequence[Sample], device: torch.device) -> list[dict]:
    """Detections on each sample down to the lowest threshold validation sweeps; kept or dropped by score afterwards."""
    model.network.eval()
    model.network.score_thresh = min(CALIBRATION_THRESHOLDS)
    model.network.nms_thresh = _VALIDATION_NMS
    return [predict_sample(model, s.image.numpy(), device) for s in samples]


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


def thresholds_only(calibration: dict) -> dict:
    """Each way of detecting's score threshold from a calibration record, without its figures."""
    return {way: {"score_threshold": row["score_threshold"]} for way, row in calibration.items() if "score_threshold" in row}
