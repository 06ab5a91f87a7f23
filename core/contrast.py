"""Contrast normalisation: one fixed mapping of every patch's brightness, at training and at detection.

Orthophotos of one forest differ most in contrast: a raw NEON flight spans a narrow band of
grey levels, while exports such as NeonTreeEvaluation's re-export equalise every plot. A
checkpoint that names a normalisation gets it applied to each patch it learns from and to each
window it detects on, so raw and equalised imagery reach the network looking alike. Checkpoints
that name none (all made before this existed) see the pixels as they are.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

# ITU-R BT.601 weights of red, green and blue in luminance.
_LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class Contrast(str, Enum):
    """How a checkpoint's patches are normalised before the network sees them."""

    NONE = "none"
    # The luminance histogram of the patch's valid pixels is equalised; colour differences kept.
    EQUALISED_LUMINANCE = "equalised-luminance"


def contrast_choice(value: str) -> Contrast:
    """The normalisation a checkpoint's metadata names.

    Raises:
        ValueError: If the name is not one this plugin knows (a newer checkpoint: update the plugin).
    """
    try:
        return Contrast(value)
    except ValueError:
        known = [c.value for c in Contrast]
        raise ValueError(f"unknown contrast normalisation {value!r}; this plugin knows {known}: update the plugin") from None


def normalise_contrast(image: np.ndarray, contrast: Contrast | str) -> np.ndarray:
    """``image`` (3, H, W), 0-255, normalised as ``contrast`` says; black pixels (padding, nodata) stay black."""
    if contrast_choice(contrast) is Contrast.NONE:
        return image
    return equalise_luminance(image)


def equalise_luminance(image: np.ndarray) -> np.ndarray:
    """Histogram-equalise the luminance of the non-black pixels, keeping each pixel's colour differences.

    The luminance of every valid pixel is replaced by its rank among the patch's luminances
    (scaled to 0-255), and red, green and blue move with it, so a pixel keeps how much redder or
    bluer it is than its brightness. Black pixels are padding or nodata: they take no part and
    stay black.
    """
    image = np.asarray(image, dtype=np.float32)
    valid = image.max(axis=0) > 0
    if valid.sum() < 2:
        return image
    luminance = np.tensordot(_LUMINANCE_WEIGHTS, image, axes=1)
    levels = np.clip(np.rint(luminance[valid]), 0, 255).astype(np.int64)
    counts = np.bincount(levels, minlength=256)
    cumulative = np.cumsum(counts)
    lowest = cumulative[counts.nonzero()[0][0]]
    if cumulative[-1] == lowest:  # one grey level: nothing to spread
        return image
    mapping = np.clip((cumulative - lowest) / (cumulative[-1] - lowest), 0.0, 1.0) * 255.0
    shift = np.zeros_like(luminance)
    shift[valid] = mapping[levels] - luminance[valid]
    equalised = np.clip(image + shift[None], 0.0, 255.0)
    equalised[:, ~valid] = 0.0
    return equalised.astype(np.float32)
