"""Style mixing: swap feature statistics between training patches so the trunk learns shape, not site.

The early layers of a convolutional trunk carry an image's "style" (its colour, brightness and
texture statistics) in the mean and spread of each channel, and sites differ in style as much as
in their trees. While training, a patch's early feature maps are re-standardised to a random mix
of its own per-channel statistics and another patch's in the batch, so the detector sees the same
crowns in another site's style and cannot lean on it (Zhou et al., "Domain generalization with
MixStyle", ICLR 2021). Nothing changes at detection: the hooks act only in training mode and are
removed when training ends, so checkpoints stay plain networks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.hooks import RemovableHandle

# The trunk stages whose outputs are mixed: the early ones, which carry style more than content.
MIXED_STAGES = ("layer1", "layer2")
# Beta(0.1, 0.1) mixing weights: mostly near 0 or 1, so a patch often takes on most of another's style.
_BETA = 0.1
_EPS = 1e-6


def mix_styles(features: torch.Tensor, weights: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
    """``features`` (N, C, H, W) re-standardised to ``weights`` x own + (1 - ``weights``) x partner's statistics.

    Args:
        features: One stage's output for a batch.
        weights: (N,) mixing weights from 0 (all partner's style) to 1 (unchanged).
        partners: (N,) index of each patch's partner in the batch.
    """
    mean = features.mean(dim=(2, 3), keepdim=True).detach()
    spread = (features.var(dim=(2, 3), keepdim=True) + _EPS).sqrt().detach()
    normalised = (features - mean) / spread
    w = weights.to(features.dtype).view(-1, 1, 1, 1)
    mixed_mean = w * mean + (1 - w) * mean[partners]
    mixed_spread = w * spread + (1 - w) * spread[partners]
    return normalised * mixed_spread + mixed_mean


def attach_style_mixing(network: torch.nn.Module, probability: float, rng: np.random.Generator) -> list[RemovableHandle]:
    """Mix styles after each of the trunk's ``MIXED_STAGES``, on a ``probability`` share of training steps.

    The draws come from their own generator ``rng``, so turning style mixing on leaves the
    training's other random draws (patches, crops, colours) as they were, and a training that
    goes on after a stop can restore the generator's state.

    Returns:
        The hooks' handles; call ``remove()`` on each when training ends.
    """

    def mix_after_stage(module: torch.nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training or len(output) < 2 or rng.random() >= probability:
            return None
        weights = torch.from_numpy(rng.beta(_BETA, _BETA, size=len(output)))
        partners = torch.from_numpy(rng.permutation(len(output)))
        return mix_styles(output, weights, partners)

    trunk = network.backbone.body
    return [getattr(trunk, stage).register_forward_hook(mix_after_stage) for stage in MIXED_STAGES]
