"""EfficientNet-Lite as a detector trunk: four stages at strides 4, 8, 16 and 32.

EfficientNet-Lite (Tan and Le, 2019; the "Lite" variants of TensorFlow's model garden) is a
chain of MobileNet-style inverted bottleneck blocks without squeeze-excitation, with ReLU6 and
TensorFlow's "same" padding. ImageNet weights for it exist as plain PyTorch state dicts
(``efficientnet-liteN-*.pth``, Apache-2.0, converted from TensorFlow's official checkpoints);
``trunk_weights_from_imagenet`` maps such a file's names onto this trunk, so that a detector
starts from features that already tell leaves, shadows and roofs apart instead of from noise.

The classifier's head (the 1280-channel convolution and the dense layer) is left out: a
detector reads the four stage outputs through its feature pyramid.
"""

from __future__ import annotations

import math
import pickle  # nosec B403 - only for its error type; torch.load reads with weights_only
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from .errors import CheckpointError

# (width multiplier, depth multiplier) of each variant, as TensorFlow's Lite builder sets them.
VARIANTS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1), "efficientnet_lite2": (1.1, 1.2)}
# TensorFlow's BatchNorm epsilon: the weights' statistics were learnt with it.
_BATCH_NORM_EPS = 1e-3
_STEM_CHANNELS = 32


@dataclass(frozen=True)
class _BlockGroup:
    """Blocks of one shape, repeated: TensorFlow's block string ``r{repeats}_k{kernel}_s{stride}_e{expand}_o{out}``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    channels: int


# EfficientNet-Lite0's seven block groups. The detector's stem takes the first group (stride 2);
# its four stages take groups 2, 3, 4-5 and 6-7, ending at strides 4, 8, 16 and 32.
_GROUPS = (
    _BlockGroup(1, 3, 1, 1, 16),
    _BlockGroup(2, 3, 2, 6, 24),
    _BlockGroup(2, 5, 2, 6, 40),
    _BlockGroup(3, 3, 2, 6, 80),
    _BlockGroup(3, 5, 1, 6, 112),
    _BlockGroup(4, 5, 2, 6, 192),
    _BlockGroup(1, 3, 1, 6, 320),
)
_STAGE_GROUPS = ((1,), (2,), (3, 4), (5, 6))


def _scaled_channels(channels: int, width: float) -> int:
    """Channels after the width multiplier, rounded to a multiple of 8 as TensorFlow rounds them."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def _scaled_repeats(group_index: int, repeats: int, depth: float) -> int:
    """Blocks in a group after the depth multiplier; the Lite variants keep the first and last groups fixed."""
    if group_index in (0, len(_GROUPS) - 1):
        return repeats
    return math.ceil(repeats * depth)


class SamePaddingConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's "same": output size ceil(input / stride), the odd
    pixel of padding after the image rather than before. The ImageNet weights were learnt with
    that alignment; PyTorch's symmetric padding would shift every strided layer by a pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            padding += [total // 2, total - total // 2]
        if any(padding):
            x = functional.pad(x, padding)
        return functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv_norm(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        SamePaddingConv2d(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels, eps=_BATCH_NORM_EPS),
    )


class InvertedBottleneck(nn.Module):
    """Widen with a 1x1 convolution, filter each channel alone, narrow again; a shortcut when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        wide = in_channels * expand
        self.expand = _conv_norm(in_channels, wide, 1) if expand != 1 else None
        self.depthwise = _conv_norm(wide, wide, kernel, stride=stride, groups=wide)
        self.project = _conv_norm(wide, out_channels, 1)
        self.shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = functional.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(functional.relu6(self.depthwise(y)))
        return y + x if self.shortcut else y


class EfficientNetLiteTrunk(nn.Module):
    """The stem and four stages of EfficientNet-Lite, run in order (a detector's backbone body).

    Attributes:
        stage_channels: Output channels of ``layer1`` to ``layer4`` (strides 4, 8, 16, 32).
    """

    def __init__(self, variant: str = "efficientnet_lite0") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise CheckpointError(f"unknown EfficientNet-Lite variant {variant!r}; known: {sorted(VARIANTS)}")
        width, depth = VARIANTS[variant]
        blocks: list[list[InvertedBottleneck]] = []
        in_channels = _STEM_CHANNELS
        for index, group in enumerate(_GROUPS):
            out_channels = _scaled_channels(group.channels, width)
            group_blocks = []
            for repeat in range(_scaled_repeats(index, group.repeats, depth)):
                stride = group.stride if repeat == 0 else 1
                group_blocks.append(InvertedBottleneck(in_channels, out_channels, group.kernel, stride, group.expand))
                in_channels = out_channels
            blocks.append(group_blocks)
        self.stem = nn.Sequential(
            _conv_norm(3, _STEM_CHANNELS, 3, stride=2), nn.ReLU6(inplace=True), *blocks[0]
        )
        stages = [nn.Sequential(*[block for g in groups for block in blocks[g]]) for groups in _STAGE_GROUPS]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.stage_channels = tuple(stage[-1].project[1].num_features for stage in stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


# Names in an ImageNet file -> names in this trunk, per block and for the stem.
_BLOCK_PARTS = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0",
                "_bn1": "depthwise.1", "_project_conv": "project.0", "_bn2": "project.1"}
_STEM_PARTS = {"_conv_stem": "stem.0.0", "_bn0": "stem.0.1"}
# The classifier's head, which a detector trunk does not have.
_CLASSIFIER_PARTS = ("_conv_head", "_bn1", "_fc")


def trunk_weights_from_imagenet(trunk: EfficientNetLiteTrunk, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``trunk``'s state dict filled from an EfficientNet-Lite ImageNet state dict.

    Raises:
        CheckpointError: If the file is not EfficientNet-Lite of the trunk's variant (a weight
            is missing, left over or of another shape).
    """
    # Every inverted bottleneck in reading order: the order of ``_blocks.N`` in an ImageNet file.
    block_prefixes = [name for name, module in trunk.named_modules() if isinstance(module, InvertedBottleneck)]
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        head, _, rest = key.partition(".")
        if head in _CLASSIFIER_PARTS:
            continue
        if head in _STEM_PARTS:
            renamed[f"{_STEM_PARTS[head]}.{rest}"] = tensor
            continue
        number, _, rest = rest.partition(".")
        part, _, leaf = rest.partition(".")
        if head != "_blocks" or not number.isdigit() or part not in _BLOCK_PARTS or int(number) >= len(block_prefixes):
            raise CheckpointError(f"{key!r} is not a weight of this EfficientNet-Lite trunk: is the file another variant?")
        renamed[f"{block_prefixes[int(number)]}.{_BLOCK_PARTS[part]}.{leaf}"] = tensor
    expected = trunk.state_dict()
    missing = sorted(set(expected) - set(renamed))
    wrong_shape = sorted(k for k in set(expected) & set(renamed) if expected[k].shape != renamed[k].shape)
    if missing or wrong_shape:
        raise CheckpointError(
            f"the ImageNet weights do not fit this EfficientNet-Lite trunk (missing {missing[:3]}, of another shape "
            f"{wrong_shape[:3]}): is the file another variant?"
        )
    return renamed


def load_imagenet_weights(body: nn.Module, variant: str, path: str | Path) -> None:
    """Load an EfficientNet-Lite ImageNet ``.pth`` file into a detector's trunk.

    Args:
        body: The trunk as the detector holds it (``network.backbone.body``: the trunk's stem
            and stages under the trunk's own names).
        variant: Its EfficientNet-Lite variant, e.g. ``efficientnet_lite0``.
        path: The ImageNet state dict, read with ``weights_only`` so that no pickled code runs.

    Raises:
        CheckpointError: If the file cannot be read or holds another network's weights.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"cannot read ImageNet weights from {path}: {exc}") from exc
    body.load_state_dict(trunk_weights_from_imagenet(EfficientNetLiteTrunk(variant), state))
