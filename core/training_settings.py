"""How to train: the settings a training run takes, checked when they are made."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .checkpoint import ModelMetadata
from .errors import TreecrownsError
from .prediction import Device

# Box regression losses torchvision's RetinaNet head computes (TrainingSettings.box_loss).
BOX_LOSSES = ("l1", "giou")
# The retraining rate for a model whose checkpoint states none (DeepForest's, and ours before
# checkpoints stated one). 0.001: on five sites the 18-site model of 2026-12-02 knows, one
# corrected plot then helps the site's other plots (+0.034 mean) where 0.002 barely did (+0.007),
# and on five sites the 4-site model never saw it gains as much (+0.172 against +0.174;
# model/DIARY.md, "Correcting one plot and retraining").
DEFAULT_RETRAINING_LEARNING_RATE = 0.001


@dataclass(frozen=True)
class TrainingSettings:
    """How to train. The defaults suit fine-tuning a trained model on a few hundred corrected crowns."""

    epochs: int = 10
    batch_size: int = 8
    # None: the rate the model being trained states for retraining (learning_rate_for).
    learning_rate: float | None = None
    weight_decay: float = 1e-4
    steps_per_epoch: int | None = None
    # How much of the annotations is held out to validate on (train: whole rasters when there are
    # enough, else a strip of each area). A user's corrections in two or more places are checked
    # on the places instead (core.retraining); 0 there means no comparison with the base model.
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
    # Run the network's forward pass in bfloat16 (torch.autocast; weights, optimiser and losses stay
    # float32). About twice as fast on CPUs with bfloat16 units (AVX-512 BF16, AMX) and recent GPUs,
    # several times slower on CPUs without them; the weights saved are float32 either way.
    # None: where the device has bfloat16 units (core.prediction.computes_bfloat16).
    bfloat16: bool | None = None
    seed: int = 0
    device: Device = Device.AUTO

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be at least 1, got {self.batch_size}")
        if self.learning_rate is not None and not self.learning_rate > 0:
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


def learning_rate_for(metadata: ModelMetadata) -> float:
    """The rate retraining ``metadata``'s model starts from when the settings name none: its own, or the default."""
    if metadata.retraining_learning_rate is not None:
        return metadata.retraining_learning_rate
    return DEFAULT_RETRAINING_LEARNING_RATE


def with_learning_rate_for(settings: TrainingSettings, metadata: ModelMetadata) -> TrainingSettings:
    """``settings`` with the rate they name, or else the one ``metadata``'s model states (``learning_rate_for``)."""
    if settings.learning_rate is not None:
        return settings
    return replace(settings, learning_rate=learning_rate_for(metadata))
