"""Tiled detection over a whole raster: windows, batches, device and cross-window merge."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from .annotations import pixel_boxes_to_map
from .boxes import cut_by_interior_edge, merge_window_detections
from .checkpoint import LoadedModel
from .contrast import normalise_contrast
from .errors import Cancelled, RasterError, TreecrownsError
from .raster import RasterInfo, RasterReader
from .tiling import Window, window_grid
from .views import VIEW_SCORE_FLOOR, detect_in_views, fuse_scales

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
StopCheck = Callable[[], bool]

# A box this close (in model pixels) to an interior window edge counts as cut by it.
_EDGE_TOLERANCE_PX = 2.0
# The fewest model pixels across a raster's shorter side: 8 at 0.2 m is 1.6 m, a small crown.
MIN_RASTER_MODEL_PX = 8


class Device(str, Enum):
    """Where the network runs."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def resolve_device(choice: Device | str) -> tuple[torch.device, str | None]:
    """The torch device for a user's choice, and a warning when the choice cannot be honoured."""
    choice = Device(choice)
    if choice == Device.CPU:
        return torch.device("cpu"), None
    if torch.cuda.is_available():
        return torch.device("cuda"), None
    if choice == Device.CUDA:
        return torch.device("cpu"), "CUDA was chosen but no usable GPU was found; running on the CPU instead"
    return torch.device("cpu"), None


@dataclass(frozen=True)
class DetectionSettings:
    """User choices for one detection run; ``None`` means "as the checkpoint says"."""

    score_threshold: float | None = None
    nms_threshold: float | None = None
    patch_size: int | None = None
    overlap: float = 0.15
    batch_size: int = 4
    device: Device = Device.AUTO
    resample: bool = True
    bands: tuple[int, int, int] | None = None
    # Detect on four turned views of every patch and fuse them (4x the network work).
    test_time_augmentation: bool | None = None


@dataclass(frozen=True)
class Detections:
    """Crowns found in one raster, in the raster's CRS (x = column, y = -row if it has none)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]
    pixel_boxes: np.ndarray
    raster: RasterInfo
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class _Plan:
    """How raster pixels map to model pixels for one run."""

    scale_x: float
    scale_y: float
    patch_size: int
    windows: list[Window]


def _plans(
    info: RasterInfo, model: LoadedModel, settings: DetectionSettings, scales: Sequence[float], notes: list[str]
) -> list[_Plan]:
    """Windows and resampling for reading the raster at each of ``scales`` times the model's ground resolution.

    Every scale slides the same windows over the raster, a patch's worth at the finest scale;
    a coarser scale reads each window into fewer pixels, padded to the patch. A crown cut by a
    window edge is then cut the same way at every scale, as on a validation plot, so the fused
    scores are those the threshold was calibrated on. (When each scale had its own full-patch
    windows, a crown whole at one scale could be cut at the other, and the fused crown lost
    about half its score: see the model card.)
    """
    patch = settings.patch_size or model.metadata.patch_size
    zoom_x = zoom_y = 1.0  # model pixels per raster pixel at scale 1
    if settings.resample:
        if info.ground_resolution_m is None:
            notes.append(
                "the raster has no coordinate reference system, so its ground resolution is unknown; "
                f"it is used as if it were at the model's {model.metadata.ground_resolution_m} m per pixel"
            )
        else:
            res_x, res_y = info.ground_resolution_m
            zoom_x = res_x / model.metadata.ground_resolution_m
            zoom_y = res_y / model.metadata.ground_resolution_m
    check_large_enough(info, zoom_x, zoom_y, model.metadata.ground_resolution_m)
    finest = min(scales)
    window_w = max(8, round(patch * finest / zoom_x))
    window_h = max(8, round(patch * finest / zoom_y))
    windows = window_grid(info.width, info.height, window_w, settings.overlap, window_h)
    return [_Plan(zoom_x / scale, zoom_y / scale, patch, windows) for scale in scales]


def check_large_enough(info: RasterInfo, zoom_x: float, zoom_y: float, model_resolution_m: float) -> None:
    """Refuse a raster too small (or too narrow) at the model's resolution to hold one tree crown."""
    model_w, model_h = info.width * zoom_x, info.height * zoom_y
    if min(model_w, model_h) < MIN_RASTER_MODEL_PX:
        metres = MIN_RASTER_MODEL_PX * model_resolution_m
        raise RasterError(
            f"{info.path} is {info.width} x {info.height} px, {model_w * model_resolution_m:.1f} x "
            f"{model_h * model_resolution_m:.1f} m at the model's {model_resolution_m:g} m per pixel: too small to hold a "
            f"tree crown (both sides need at least {metres:g} m); choose a larger raster"
        )


def _batches(items: Sequence[Window], size: int) -> Iterator[list[Window]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def uses_views(model: LoadedModel, settings: DetectionSettings) -> bool:
    """Whether this run fuses four turned views: the user's choice, else the checkpoint's."""
    if settings.test_time_augmentation is not None:
        return settings.test_time_augmentation
    return model.metadata.test_time_augmentation


def scales_of_run(model: LoadedModel, settings: DetectionSettings) -> tuple[float, ...]:
    """The scales this run reads the raster at: the checkpoint's view scales with views, else 1 only."""
    return model.metadata.view_scales if uses_views(model, settings) else (1.0,)


def _configure(model: LoadedModel, settings: DetectionSettings, patch: int, device: torch.device) -> None:
    network = model.network
    # channels_last: convolutions run about 1.4x faster on CPU (measured on the bundled model).
    network.eval().to(device=device, memory_format=torch.channels_last)
    default_threshold = model.metadata.score_threshold_for(uses_views(model, settings))
    network.score_thresh = settings.score_threshold if settings.score_threshold is not None else default_threshold
    network.nms_thresh = settings.nms_threshold if settings.nms_threshold is not None else model.metadata.nms_threshold
    fit_input_size(model, patch)


def fit_input_size(model: LoadedModel, patch: int) -> None:
    """Make a lite network take ``patch`` px patches as they are (torchvision would resize them)."""
    if model.metadata.architecture.get("family") == "lite":
        model.network.transform.min_size = (patch,)
        model.network.transform.max_size = patch


def predict_images(
    model: LoadedModel, images: Sequence[np.ndarray], device: torch.device, augment: bool = False
) -> list[dict[str, np.ndarray]]:
    """Run the network on (3, H, W) 0-255 images; boxes come back in image pixels.

    Each image is first normalised as the checkpoint says (core.contrast); black pixels are
    padding or nodata and stay black.

    With ``augment``, every image (all square and the same size) is seen in four
    turned views and the views' detections are fused (core.views); the network's
    score threshold then applies to the fused scores.
    """
    images = [normalise_contrast(image, model.metadata.contrast) for image in images]
    tensors = [torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / 255.0).to(device) for img in images]
    network = model.network
    if not augment:
        with torch.inference_mode():
            outputs = network(tensors)
        return [{k: v.detach().cpu().numpy() for k, v in out.items()} for out in outputs]
    return detect_in_views(network, torch.stack(tensors))


def detect(
    raster_path: str | Path,
    model: LoadedModel,
    settings: DetectionSettings = DetectionSettings(),
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Detections:
    """Find tree crowns in a raster of any size, reading it window by window.

    Args:
        raster_path: Any raster GDAL can read.
        model: A loaded checkpoint.
        settings: Thresholds, tiling, device and band choices.
        progress: Called with (fraction done, message) after every batch.
        should_stop: Polled before every batch; when it returns True the run stops.

    Returns:
        The merged detections in the raster's CRS.

    Raises:
        RasterError: If the raster cannot be read.
        Cancelled: If ``should_stop`` asked to stop.
    """
    if not 0.0 <= settings.overlap <= 0.9:
        raise TreecrownsError(f"overlap must be a fraction between 0 and 0.9, got {settings.overlap}")
    if settings.batch_size < 1:
        raise TreecrownsError(f"batch size must be at least 1, got {settings.batch_size}")
    notes: list[str] = []
    device, device_note = resolve_device(settings.device)
    if device_note:
        notes.append(device_note)
    scales = scales_of_run(model, settings)
    nms = settings.nms_threshold if settings.nms_threshold is not None else model.metadata.nms_threshold
    with RasterReader(raster_path, settings.bands) as reader:
        info = reader.info
        plans = _plans(info, model, settings, scales, notes)
        _configure(model, settings, plans[0].patch_size, device)
        score_threshold = model.network.score_thresh
        if len(scales) > 1:
            # Each scale keeps its crowns down to the floor; the threshold applies to the fused scores.
            model.network.score_thresh = min(score_threshold, VIEW_SCORE_FLOOR)
        counter = _WindowCounter(sum(len(plan.windows) for plan in plans), progress, raster_hectares(info))
        try:
            found = [
                _detect_at_scale(reader, model, settings, plan, device, nms, counter, should_stop) for plan in plans
            ]
        finally:
            model.network.score_thresh = score_threshold
    pixel_boxes, scores, label_ids = fuse_scales(found, score_threshold)
    if not info.georeferenced:
        notes.append("the raster is not georeferenced: crowns are placed as QGIS draws it (x = column, y = -row)")
    for note in notes:
        log.warning(note)
    return Detections(
        boxes=pixel_boxes_to_map(pixel_boxes, info),
        scores=scores.astype(float),
        labels=tuple(model.metadata.labels[int(i)] for i in label_ids),
        pixel_boxes=pixel_boxes,
        raster=info,
        warnings=tuple(notes),
    )


class _WindowCounter:
    """Progress over every window of every scale, told as ground covered and time left."""

    def __init__(self, total: int, progress: ProgressCallback | None, hectares: float | None = None) -> None:
        self.total, self.done, self.progress, self.hectares = total, 0, progress, hectares
        self.started = time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        if self.progress is None:
            return
        fraction = self.done / self.total
        covered = (f"{fraction * self.hectares:.1f} of {self.hectares:.1f} ha" if self.hectares is not None
                   else f"{self.done} of {self.total} windows")
        left = (time.monotonic() - self.started) * (1 - fraction) / fraction
        self.progress(fraction, f"{covered}, about {_duration(left)} left" if fraction < 1 else f"{covered}, done")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def raster_hectares(info: RasterInfo) -> float | None:
    """The ground a raster covers, when its pixel size is known."""
    if info.ground_resolution_m is None:
        return None
    res_x, res_y = info.ground_resolution_m
    return info.width * res_x * info.height * res_y / 10_000


def _detect_at_scale(
    reader: RasterReader,
    model: LoadedModel,
    settings: DetectionSettings,
    plan: _Plan,
    device: torch.device,
    nms: float,
    counter: _WindowCounter,
    should_stop: StopCheck | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crowns in raster pixels (boxes, scores, label ids) found on one window grid, merged across windows."""
    info = reader.info
    augment = uses_views(model, settings)
    found_boxes, found_scores, found_labels, found_cut = [], [], [], []
    for batch in _batches(plan.windows, settings.batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled("detection was cancelled; no layer was written")
        images, masks, sizes = [], [], []
        for window in batch:
            out_w = max(1, min(plan.patch_size, round(window.width * plan.scale_x)))
            out_h = max(1, min(plan.patch_size, round(window.height * plan.scale_y)))
            image, valid = reader.read(window, out_w, out_h)
            padded = np.zeros((3, plan.patch_size, plan.patch_size), dtype=np.float32)
            padded[:, :out_h, :out_w] = image
            images.append(padded)
            masks.append(valid)
            sizes.append((out_w, out_h))
        outputs = predict_images(model, images, device, augment)
        for window, valid, (out_w, out_h), out in zip(batch, masks, sizes, outputs):
            boxes = _to_raster_pixels(out["boxes"], window, out_w, out_h)
            centre_x = ((out["boxes"][:, 0] + out["boxes"][:, 2]) / 2).astype(int).clip(0, out_w - 1)
            centre_y = ((out["boxes"][:, 1] + out["boxes"][:, 3]) / 2).astype(int).clip(0, out_h - 1)
            inside = valid[centre_y, centre_x] if len(boxes) else np.zeros(0, dtype=bool)
            tolerance = _EDGE_TOLERANCE_PX * window.width / out_w
            found_boxes.append(boxes[inside])
            found_scores.append(out["scores"][inside])
            found_labels.append(out["labels"][inside])
            found_cut.append(cut_by_interior_edge(boxes[inside], window, info.width, info.height, tolerance))
        counter.add(len(batch))
    pixel_boxes = np.concatenate(found_boxes) if found_boxes else np.zeros((0, 4))
    scores = np.concatenate(found_scores) if found_scores else np.zeros(0)
    label_ids = np.concatenate(found_labels) if found_labels else np.zeros(0, dtype=np.int64)
    cut = np.concatenate(found_cut) if found_cut else np.zeros(0, dtype=bool)
    keep = merge_window_detections(pixel_boxes, scores, label_ids, cut, nms)
    return pixel_boxes[keep], scores[keep], label_ids[keep]


def _to_raster_pixels(boxes: np.ndarray, window: Window, out_w: int, out_h: int) -> np.ndarray:
    """Model-pixel boxes of a resampled window to raster pixel coordinates, clipped to the window."""
    if len(boxes) == 0:
        return np.zeros((0, 4))
    clipped = boxes.astype(float).copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, out_w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, out_h)
    sx, sy = window.width / out_w, window.height / out_h
    return np.stack(
        [
            window.col_off + clipped[:, 0] * sx,
            window.row_off + clipped[:, 1] * sy,
            window.col_off + clipped[:, 2] * sx,
            window.row_off + clipped[:, 3] * sy,
        ],
        axis=1,
    )
