"""Tiled detection over a whole raster: windows, batches, device and cross-window merge."""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from .annotations import pixel_boxes_to_map
from .boxes import cut_by_interior_edge
from .checkpoint import LoadedModel
from .contrast import normalise_contrast
from .crown_merge import MergedCrowns, RawCrowns, StreamingMerge
from .errors import Cancelled, RasterError, TreecrownsError
from .raster import RasterInfo, RasterReader
from .tiling import Window, window_grid
from .views import VIEW_SCORE_FLOOR, detect_in_views

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


def computes_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` has bfloat16 units, where a mixed-precision training step takes about half the time.

    On a CPU without them (AVX2 only) a bfloat16 step takes several times as long as a float32 one.
    ``torch.backends.cpu.get_cpu_capability()`` says only "AVX512" on CPUs with and without them,
    so the instruction sets themselves are asked.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


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
    # 16-bit convolutions; None: on a GPU, off on a CPU (see predict_images).
    mixed_precision: bool | None = None


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
class ScaleReading:
    """How raster pixels map to model pixels at one view scale."""

    scale_x: float
    scale_y: float
    patch_size: int


def _windows_and_readings(
    info: RasterInfo, model: LoadedModel, settings: DetectionSettings, scales: Sequence[float], notes: list[str]
) -> tuple[list[Window], list[ScaleReading]]:
    """Windows, and how to resample them at each of ``scales`` times the model's ground resolution.

    Every scale slides the same windows over the raster, a patch's worth at the finest scale;
    a coarser scale reads each window into fewer pixels, padded to the patch. A crown cut by a
    window edge is then cut the same way at every scale, as on a validation plot, so the fused
    scores are those the threshold was calibrated on. (When each scale had its own full-patch
    windows, a crown whole at one scale could be cut at the other, and the fused crown lost
    about half its score: see model/DIARY.md.)
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
    return windows, [ScaleReading(zoom_x / scale, zoom_y / scale, patch) for scale in scales]


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


def fit_input_size(model: LoadedModel, patch: int) -> None:
    """Make a lite network take ``patch`` px patches as they are (torchvision would resize them)."""
    if model.metadata.architecture.get("family") == "lite":
        model.network.transform.min_size = (patch,)
        model.network.transform.max_size = patch


def predict_images(
    model: LoadedModel,
    images: Sequence[np.ndarray],
    device: torch.device,
    augment: bool = False,
    mixed_precision: bool | None = None,
) -> list[dict[str, np.ndarray]]:
    """Run the network on (3, H, W) 0-255 images; boxes come back in image pixels.

    Each image is first normalised as the checkpoint says (core.contrast); black pixels are
    padding or nodata and stay black.

    With ``augment``, every image (all square and the same size) is seen in four
    turned views and the views' detections are fused (core.views); the network's
    score threshold then applies to the fused scores.

    ``mixed_precision`` (default: on a GPU only) runs the convolutions in 16-bit floats
    (float16 on a GPU, bfloat16 on a CPU), about twice the throughput on a GPU.
    """
    images = [normalise_contrast(image, model.metadata.contrast) for image in images]
    tensors = [torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / 255.0).to(device) for img in images]
    network = model.network
    with _autocast(device, mixed_precision):
        if not augment:
            with torch.inference_mode():
                outputs = network(tensors)
            return [{k: v.detach().float().cpu().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
                     for k, v in out.items()} for out in outputs]
        return detect_in_views(network, torch.stack(tensors))


def _autocast(device: torch.device, mixed_precision: bool | None):
    """Autocast to float16 on a GPU (bfloat16 on a CPU) when mixed precision is on; else nothing."""
    enabled = device.type == "cuda" if mixed_precision is None else mixed_precision
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def detect(
    raster_path: str | Path,
    model: LoadedModel,
    settings: DetectionSettings = DetectionSettings(),
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    cluster: str = "",
) -> Detections:
    """Find tree crowns in a raster of any size, reading it window by window.

    Windows are read in rows, top to bottom, in blocks of rows; the crowns of each block are
    merged with their neighbours' as soon as no later window can touch them (core.crown_merge),
    so memory stays flat however large the raster.

    Args:
        raster_path: Any raster GDAL can read, or a folder of tiles (core.mosaic).
        model: A loaded checkpoint.
        settings: Thresholds, tiling, device and band choices.
        progress: Called with (fraction done, message) as windows are done.
        should_stop: Polled before every batch; when it returns True the run stops.
        cluster: Where the windows are detected: empty for this process, else a Dask cluster
            (core.cluster: ``local:N`` or ``tcp://host:port``); the model must then be a file.

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
    with RasterReader(raster_path, settings.bands) as reader:
        info = reader.info
        run = plan_run(info, model, settings, notes)
        counter = WindowCounter(run.window_count, progress, raster_hectares(info))
        merge = StreamingMerge(len(run.scales), run.nms_threshold, run.score_threshold, margin=run.merge_margin)
        if cluster:
            from .cluster import detect_blocks_on_cluster  # dask is needed only here

            found = detect_blocks_on_cluster(cluster, str(raster_path), model, settings, run, counter, should_stop, notes)
        else:
            found = _detect_blocks_here(reader, model, settings, run, counter, should_stop, notes)
        merged = [merge.add(raw, top, front) for raw, top, front in in_reading_order(found, run)]
    merged.append(merge.finish())
    crowns = MergedCrowns.concatenate(merged)
    if not info.georeferenced:
        notes.append("the raster is not georeferenced: crowns are placed as QGIS draws it (x = column, y = -row)")
    for note in notes:
        log.warning(note)
    return Detections(
        boxes=pixel_boxes_to_map(crowns.boxes, info),
        scores=crowns.scores.astype(float),
        labels=tuple(model.metadata.labels[int(i)] for i in crowns.labels),
        pixel_boxes=crowns.boxes,
        raster=info,
        warnings=tuple(notes),
    )


@dataclass(frozen=True)
class RunPlan:
    """Everything about a run that does not depend on the pixels: scales, windows, blocks, thresholds."""

    scales: tuple[float, ...]
    readings: tuple[ScaleReading, ...]
    blocks: tuple[tuple[Window, ...], ...]
    score_threshold: float
    nms_threshold: float

    @property
    def merge_margin(self) -> float:
        """How far (raster rows) above and below a band the merge looks for boxes of its crowns: two windows."""
        return 2.0 * max((window.height for block in self.blocks for window in block[:1]), default=0)

    @property
    def window_count(self) -> int:
        return sum(len(block) for block in self.blocks) * len(self.scales)

    def front_after(self, index: int) -> float:
        """The top row of the windows after block ``index``: no crown found later starts above it."""
        if index + 1 < len(self.blocks):
            return float(self.blocks[index + 1][0].row_off)
        return math.inf


def plan_run(info: RasterInfo, model: LoadedModel, settings: DetectionSettings, notes: list[str]) -> RunPlan:
    """Windows, scales and thresholds of a run on ``info`` (notes gathers what the user should be told)."""
    scales = scales_of_run(model, settings)
    windows, readings = _windows_and_readings(info, model, settings, scales, notes)
    default_threshold = model.metadata.score_threshold_for(uses_views(model, settings))
    score_threshold = settings.score_threshold if settings.score_threshold is not None else default_threshold
    nms = settings.nms_threshold if settings.nms_threshold is not None else model.metadata.nms_threshold
    return RunPlan(scales, tuple(readings), window_blocks(windows, settings.batch_size), score_threshold, nms)


# A block is at least this many windows (whole rows of them): enough to keep a batch full and,
# on a cluster, to make a task worth sending; few enough that memory stays small.
BLOCK_WINDOWS = 64


def window_blocks(windows: Sequence[Window], batch_size: int) -> tuple[tuple[Window, ...], ...]:
    """Consecutive whole rows of windows, each block at least ``max(BLOCK_WINDOWS, batch_size)`` windows."""
    rows: dict[int, list[Window]] = {}
    for window in windows:
        rows.setdefault(window.row_off, []).append(window)
    blocks: list[tuple[Window, ...]] = []
    current: list[Window] = []
    for row_off in sorted(rows):
        current.extend(rows[row_off])
        if len(current) >= max(BLOCK_WINDOWS, batch_size):
            blocks.append(tuple(current))
            current = []
    if current:
        blocks.append(tuple(current))
    return tuple(blocks)


def in_reading_order(
    found: Iterator[tuple[int, RawCrowns]], run: RunPlan
) -> Iterator[tuple[RawCrowns, float, float]]:
    """Blocks' crowns, whatever order they were found in, handed on top to bottom with their band (top, front)."""
    waiting: dict[int, RawCrowns] = {}
    following = 0
    for index, raw in found:
        waiting[index] = raw
        while following in waiting:
            yield waiting.pop(following), float(run.blocks[following][0].row_off), run.front_after(following)
            following += 1


def _detect_blocks_here(
    reader: RasterReader,
    model: LoadedModel,
    settings: DetectionSettings,
    run: RunPlan,
    counter: WindowCounter,
    should_stop: StopCheck | None,
    notes: list[str],
) -> Iterator[tuple[int, RawCrowns]]:
    """Each block's crowns, found in this process, block after block."""
    device, device_note = resolve_device(settings.device)
    if device_note:
        notes.append(device_note)
    prepare_network(model, settings, run, device)
    try:
        for index, block in enumerate(run.blocks):
            yield index, find_in_windows(reader, model, settings, run, block, device, counter, should_stop)
    finally:
        model.network.score_thresh = run.score_threshold


def prepare_network(model: LoadedModel, settings: DetectionSettings, run: RunPlan, device: torch.device) -> None:
    """Put the network on ``device`` in inference mode, with the run's thresholds and patch size."""
    network = model.network
    # channels_last: convolutions run about 1.4x faster on CPU (measured on the bundled model).
    network.eval().to(device=device, memory_format=torch.channels_last)
    # With several scales each keeps its crowns down to the floor; the threshold applies to the fused scores.
    network.score_thresh = run.score_threshold if len(run.scales) == 1 else min(run.score_threshold, VIEW_SCORE_FLOOR)
    network.nms_thresh = run.nms_threshold
    fit_input_size(model, run.readings[0].patch_size)


def find_in_windows(
    reader: RasterReader,
    model: LoadedModel,
    settings: DetectionSettings,
    run: RunPlan,
    windows: Sequence[Window],
    device: torch.device,
    counter: WindowCounter | None = None,
    should_stop: StopCheck | None = None,
) -> RawCrowns:
    """The crowns every scale finds in ``windows``, unmerged, in raster pixels.

    A reading thread reads and resamples the next batch while the network works on this one
    (GDAL and numpy let go of Python's lock while they work), so the two overlap on two cores
    or more, and a GPU is not kept waiting for pixels.
    """
    augment = uses_views(model, settings)
    jobs = [(scale, reading, batch) for scale, reading in enumerate(run.readings)
            for batch in _batches(windows, settings.batch_size)]
    found: list[RawCrowns] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="treecrowns-read") as reading_thread:
        next_read = reading_thread.submit(_read_batch, reader, *jobs[0][1:]) if jobs else None
        for index, (scale, _reading, batch) in enumerate(jobs):
            if should_stop is not None and should_stop():
                raise Cancelled("detection was cancelled; no layer was written")
            read = next_read.result()
            if index + 1 < len(jobs):
                next_read = reading_thread.submit(_read_batch, reader, *jobs[index + 1][1:])
            outputs = predict_images(model, read.images, device, augment, settings.mixed_precision)
            found += [_crowns_in_window(reader.info, window, valid, size, out, scale)
                      for window, valid, size, out in zip(batch, read.masks, read.sizes, outputs)]
            if counter is not None:
                counter.add(len(batch))
    return RawCrowns.concatenate(found)


def every_tenth(say: Callable[[str], None]) -> ProgressCallback:
    """A progress callback that passes on a message once per tenth of the run, not once per batch.

    For logs and terminals: a large orthophoto has thousands of batches.
    """
    said = [-1]

    def progress(fraction: float, message: str) -> None:
        tenth = int(fraction * 10)
        if tenth > said[0]:
            said[0] = tenth
            say(message)

    return progress


class WindowCounter:
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


@dataclass(frozen=True)
class _ReadBatch:
    images: list[np.ndarray]  # (3, patch, patch), padded
    masks: list[np.ndarray]  # valid pixels of the unpadded part
    sizes: list[tuple[int, int]]  # unpadded width and height


def _read_batch(reader: RasterReader, reading: ScaleReading, batch: Sequence[Window]) -> _ReadBatch:
    """A batch of windows read at one scale, each padded to the patch size."""
    images, masks, sizes = [], [], []
    for window in batch:
        out_w = max(1, min(reading.patch_size, round(window.width * reading.scale_x)))
        out_h = max(1, min(reading.patch_size, round(window.height * reading.scale_y)))
        image, valid = reader.read(window, out_w, out_h)
        padded = np.zeros((3, reading.patch_size, reading.patch_size), dtype=np.float32)
        padded[:, :out_h, :out_w] = image
        images.append(padded)
        masks.append(valid)
        sizes.append((out_w, out_h))
    return _ReadBatch(images, masks, sizes)


def _crowns_in_window(
    info: RasterInfo, window: Window, valid: np.ndarray, size: tuple[int, int], out: dict[str, np.ndarray], scale: int
) -> RawCrowns:
    """One window's detections in raster pixels, without those centred on invalid pixels."""
    out_w, out_h = size
    boxes = _to_raster_pixels(out["boxes"], window, out_w, out_h)
    centre_x = ((out["boxes"][:, 0] + out["boxes"][:, 2]) / 2).astype(int).clip(0, out_w - 1)
    centre_y = ((out["boxes"][:, 1] + out["boxes"][:, 3]) / 2).astype(int).clip(0, out_h - 1)
    inside = valid[centre_y, centre_x] if len(boxes) else np.zeros(0, dtype=bool)
    tolerance = _EDGE_TOLERANCE_PX * window.width / out_w
    return RawCrowns(
        boxes[inside],
        out["scores"][inside].astype(float),
        out["labels"][inside].astype(np.int64),
        cut_by_interior_edge(boxes[inside], window, info.width, info.height, tolerance),
        np.full(int(inside.sum()), scale, dtype=np.int64),
    )


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
