"""Training patches: annotated regions read at the model's resolution, and the random patches cut from them.

Images are read once at the model's ground resolution (only the annotated regions); every
training step then draws patches from them: a random crop with scale jitter (of one region, or
of a mosaic of four), flips and transposes, colour jitter, and the contrast normalisation the
model asks for.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .annotations import ImageAnnotations, annotated_areas, crowns_centred_in, outline_of
from .areas import area_mask
from .boxes import crop_boxes
from .contrast import Contrast, equalise_luminance, normalise_contrast
from .errors import AnnotationError
from .raster import RasterReader
from .training_settings import TrainingSettings


@dataclass
class Sample:
    """One annotated region at model resolution."""

    name: str
    image: torch.Tensor  # (3, H, W) float32, 0-255
    boxes: torch.Tensor  # (N, 4) model pixels
    labels: torch.Tensor  # (N,) class index


def load_samples(items: Sequence[ImageAnnotations], labels: Sequence[str], ground_resolution_m: float) -> list[Sample]:
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
                    Sample(
                        name=f"{Path(item.image_path).name}@{window.col_off},{window.row_off}",
                        image=torch.from_numpy(image),
                        boxes=torch.as_tensor(keep_boxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.as_tensor([index[crowns.labels[i]] for i in np.flatnonzero(keep)], dtype=torch.int64),
                    )
                )
    return samples


def patch_source(
    samples: Sequence[Sample], index: int, weights: Sequence[float], patch: int, settings: TrainingSettings, rng: random.Random
) -> Sample:
    """The region a training patch is cut from: ``samples[index]``, or now and then a mosaic of four."""
    # Without a mosaic share no extra number is drawn, so earlier recipes keep their random draws.
    if settings.augment and settings.mosaic_share and rng.random() < settings.mosaic_share:
        return mosaic_of_samples([samples[i] for i in rng.choices(range(len(samples)), weights, k=4)], patch, rng)
    return samples[index]


def mosaic_of_samples(samples: Sequence[Sample], patch: int, rng: random.Random) -> Sample:
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
    return Sample(name=f"mosaic of {names}", image=image, boxes=torch.cat(boxes), labels=torch.cat(labels))


def _random_cut(sample: Sample, size: int, rng: random.Random) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
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


def random_patch(
    sample: Sample, patch: int, settings: TrainingSettings, rng: random.Random, contrast: str = Contrast.NONE.value
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
        image = colour_jitter(image, rng, settings.colour_jitter)
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


def colour_jitter(image: torch.Tensor, rng: random.Random, strength: float = 1.0) -> torch.Tensor:
    """Brightness, contrast, saturation and per-channel gain: sites and flights differ in colour."""
    brightness = rng.uniform(1 - 0.25 * strength, 1 + 0.25 * strength)
    contrast = rng.uniform(1 - 0.25 * strength, 1 + 0.25 * strength)
    saturation = rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength)
    gains = torch.tensor([rng.uniform(1 - 0.1 * strength, 1 + 0.1 * strength) for _ in range(3)])[:, None, None]
    grey = image.mean(dim=0, keepdim=True)
    image = grey + (image - grey) * saturation
    image = (image - image.mean()) * contrast + image.mean()
    return (image * brightness * gains).clamp(0.0, 1.0)
