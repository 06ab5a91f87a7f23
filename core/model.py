"""Building RetinaNet detectors from a plain architecture description.

An architecture is a JSON-friendly dict stored in every checkpoint, so a file
alone is enough to rebuild its network. Two families are known:

* ``deepforest``: torchvision's ``retinanet_resnet50_fpn`` exactly as DeepForest
  builds it (ResNet-50, 256-channel FPN with P6/P7, 4-conv heads, images
  upsampled so their short side is 800 px). Loads DeepForest's weights.
* ``lite``: a compact ResNet, ResNet or EfficientNet-Lite trunk with BatchNorm, a
  narrow FPN, short GroupNorm heads and anchors sized for crowns at the model's own
  resolution. It sees patches at native size (no upsampling), which makes it many
  times faster on a CPU.

No weights are ever downloaded: every network starts from random weights or from
a checkpoint file (a model build may then load ImageNet weights into an
EfficientNet-Lite trunk, core.efficientnet_lite).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead, retinanet_resnet50_fpn
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from .efficientnet_lite import VARIANTS as EFFICIENTNET_LITE_VARIANTS
from .efficientnet_lite import EfficientNetLiteTrunk
from .errors import CheckpointError

ArchitectureSpec = dict[str, Any]

# ImageNet statistics on the 0-1 scale: the normalisation torchvision's detectors expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Channels of the compact trunk's stem and four stages: those of every checkpoint without "trunk_widths".
COMPACT_WIDTHS = (32, 48, 96, 192, 256)


class CompactTrunk(nn.Module):
    """A narrow ResNet of basic blocks (about 2.6 M weights at the default widths): enough
    receptive field for a crown and its shadow, few enough weights to learn from a thousand
    boxes without pretraining."""

    def __init__(self, widths: tuple[int, int, int, int, int] = COMPACT_WIDTHS, norm_layer=nn.BatchNorm2d) -> None:
        super().__init__()
        stem, w1, w2, w3, w4 = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False),
            norm_layer(stem),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, padding=1, bias=False),
            norm_layer(stem),
            nn.ReLU(inplace=True),
        )
        self.layer1 = self._stage(stem, w1, 1, norm_layer)
        self.layer2 = self._stage(w1, w2, 2, norm_layer)
        self.layer3 = self._stage(w2, w3, 2, norm_layer)
        self.layer4 = self._stage(w3, w4, 1, norm_layer)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, norm_layer) -> nn.Sequential:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), norm_layer(out_channels))
        layers = [resnet.BasicBlock(in_channels, out_channels, stride=2, downsample=downsample, norm_layer=norm_layer)]
        layers += [resnet.BasicBlock(out_channels, out_channels, norm_layer=norm_layer) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def _compact(weights=None, norm_layer=nn.BatchNorm2d, widths: tuple[int, ...] = COMPACT_WIDTHS) -> CompactTrunk:
    return CompactTrunk(widths=widths, norm_layer=norm_layer)


_TRUNKS = {"compact": _compact, "resnet18": resnet.resnet18, "resnet34": resnet.resnet34, "resnet50": resnet.resnet50}
_TRUNKS.update({variant: partial(EfficientNetLiteTrunk, variant) for variant in EFFICIENTNET_LITE_VARIANTS})


def deepforest_architecture() -> ArchitectureSpec:
    """DeepForest's RetinaNet: torchvision ``retinanet_resnet50_fpn`` at its defaults."""
    return {
        "family": "deepforest",
        "trunk": "resnet50",
        "min_size": 800,
        "max_size": 1333,
    }


def lite_architecture(
    trunk: str = "resnet18",
    fpn_channels: int = 128,
    head_convs: int = 2,
    anchor_sizes: tuple[tuple[int, ...], ...] = ((8, 10, 13), (16, 20, 25), (32, 40, 50), (64, 80, 101)),
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    finest_level: int = 3,
    trunk_widths: tuple[int, ...] = COMPACT_WIDTHS,
) -> ArchitectureSpec:
    """The CPU-friendly RetinaNet: patches at native size, anchors in model pixels.

    The four anchor groups belong to four FPN levels. With ``finest_level`` 3 (every
    checkpoint before 2026-12-02) those are P3, P4, P5 and a max-pooled P6 (strides 8,
    16, 32, 64). With 2 they are P2 to P5 (strides 4 to 32): every anchor is read from
    features twice as fine, so crowns a few pixels apart are told apart, at about twice
    the network work per patch.

    ``trunk`` is ``compact``, ``resnet18``/``34``/``50`` or ``efficientnet_lite0``/``1``/``2``
    (core.efficientnet_lite, whose ImageNet weights a model build may load). ``trunk_widths``
    sets the compact trunk's channels (stem, then its four stages); the others have fixed widths.
    """
    spec = {
        "family": "lite",
        "trunk": trunk,
        "fpn_channels": fpn_channels,
        "head_convs": head_convs,
        "anchor_sizes": [list(s) for s in anchor_sizes],
        "aspect_ratios": list(aspect_ratios),
    }
    if finest_level != 3:
        # Left out at 3 so that descriptions written before the option existed stay equal.
        spec["finest_level"] = finest_level
    if tuple(trunk_widths) != COMPACT_WIDTHS:
        # Left out at the default for the same reason.
        if trunk != "compact":
            raise ValueError(f"only the compact trunk has adjustable widths, not {trunk!r}")
        spec["trunk_widths"] = list(trunk_widths)
    return spec


def _compact_widths(spec: ArchitectureSpec) -> tuple[int, ...]:
    """The compact trunk's channel widths a description asks for, checked."""
    widths = spec.get("trunk_widths", COMPACT_WIDTHS)
    if len(widths) != 5 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise CheckpointError(f"trunk widths {widths} are not five positive whole numbers (stem and four stages)")
    return tuple(widths)


def finest_pyramid_level(spec: ArchitectureSpec) -> int:
    """The finest pyramid level a lite network reads anchors from: 3 (stride 8) or 2 (stride 4)."""
    return int(spec.get("finest_level", 3))


def _trim_head_convs(head: RetinaNetHead, convs: int) -> None:
    """Keep the first ``convs`` conv blocks of both head branches (torchvision builds 4)."""
    head.classification_head.conv = nn.Sequential(*list(head.classification_head.conv)[:convs])
    head.regression_head.conv = nn.Sequential(*list(head.regression_head.conv)[:convs])


def _build_lite(spec: ArchitectureSpec, num_classes: int, patch_size: int, mean, std) -> RetinaNet:
    trunk_name = spec["trunk"]
    if trunk_name not in _TRUNKS:
        raise CheckpointError(f"unknown trunk {trunk_name!r}; known trunks: {sorted(_TRUNKS)}")
    level = finest_pyramid_level(spec)
    if level not in (2, 3):
        raise CheckpointError(f"finest pyramid level {level} is not supported; this version knows 2 and 3")
    sizes = tuple(tuple(group) for group in spec["anchor_sizes"])
    if len(sizes) != 4:
        raise CheckpointError(f"a lite network has four anchor groups, one per pyramid level; this one lists {len(sizes)}")
    if trunk_name == "compact":
        trunk = _compact(norm_layer=nn.BatchNorm2d, widths=_compact_widths(spec))
    elif "trunk_widths" in spec:
        raise CheckpointError(f"trunk widths are given for the {trunk_name!r} trunk, whose widths are fixed")
    elif trunk_name in EFFICIENTNET_LITE_VARIANTS:
        trunk = _TRUNKS[trunk_name]()
    else:
        trunk = _TRUNKS[trunk_name](weights=None, norm_layer=nn.BatchNorm2d)
    stages = ["layer1", "layer2", "layer3", "layer4"] if level == 2 else ["layer2", "layer3", "layer4"]
    in_channels = [_stage_out_channels(trunk, stage) for stage in stages]
    backbone = BackboneWithFPN(
        trunk,
        return_layers={stage: str(index) for index, stage in enumerate(stages)},
        in_channels_list=in_channels,
        out_channels=spec["fpn_channels"],
        extra_blocks=LastLevelMaxPool(),
    )
    if level == 2:
        # P2 to P5 are already four levels: no max-pooled level above them.
        backbone.fpn = FeaturePyramidNetwork(in_channels, spec["fpn_channels"], extra_blocks=None)
    ratios = (tuple(spec["aspect_ratios"]),) * len(sizes)
    anchors = AnchorGenerator(sizes, ratios)
    head = RetinaNetHead(
        spec["fpn_channels"],
        anchors.num_anchors_per_location()[0],
        num_classes,
        norm_layer=partial(nn.GroupNorm, 16),
    )
    _trim_head_convs(head, spec["head_convs"])
    return RetinaNet(
        backbone,
        num_classes,
        min_size=patch_size,
        max_size=patch_size,
        image_mean=list(mean),
        image_std=list(std),
        anchor_generator=anchors,
        head=head,
        fg_iou_thresh=0.4,
        bg_iou_thresh=0.3,
        topk_candidates=300,
        detections_per_img=300,
    )


def _stage_out_channels(trunk: nn.Module, stage: str) -> int:
    """Channels a trunk's stage (``layer1`` to ``layer4``) gives the feature pyramid."""
    if isinstance(trunk, EfficientNetLiteTrunk):
        return trunk.stage_channels[int(stage[-1]) - 1]
    last_block = getattr(trunk, stage)[-1]
    last_bn = last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2
    return last_bn.num_features


def _build_deepforest(spec: ArchitectureSpec, num_classes: int, mean, std) -> RetinaNet:
    return retinanet_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        min_size=spec.get("min_size", 800),
        max_size=spec.get("max_size", 1333),
        image_mean=list(mean),
        image_std=list(std),
    )


def build_network(
    spec: ArchitectureSpec,
    num_classes: int,
    patch_size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> RetinaNet:
    """A RetinaNet with random weights, built from an architecture description.

    Raises:
        CheckpointError: If the description names an unknown family or trunk.
    """
    if num_classes < 1:
        raise CheckpointError(f"a model needs at least one class, got {num_classes}")
    family = spec.get("family")
    if family not in ("lite", "deepforest"):
        raise CheckpointError(f"unknown model family {family!r}; this version knows 'lite' and 'deepforest'")
    # The same starting weights every time, without resetting the caller's random numbers.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if family == "lite":
            return _build_lite(spec, num_classes, patch_size, mean, std)
        return _build_deepforest(spec, num_classes, mean, std)
