"""Model checkpoints: one self-describing file, and DeepForest's formats.

A treecrowns checkpoint is a safetensors file (tensors only, so opening a file
from a stranger cannot run code) whose header carries a JSON document under the
key ``treecrowns``: architecture, class labels, the ground resolution and patch
size the model works at, normalisation, default thresholds, provenance and
metrics. That is everything needed to rebuild and run the network.

DeepForest models load too: a Hugging Face folder (``config.json`` +
``model.safetensors``) or a ``torch.save``/Lightning file, which is read with
``weights_only=True`` so that no pickled code runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torchvision.models.detection.retinanet import RetinaNet

from .atomic_files import write_atomically
from .contrast import Contrast, contrast_choice
from .errors import CheckpointError, OutputError
from .model import IMAGENET_MEAN, IMAGENET_STD, ArchitectureSpec, build_network, deepforest_architecture

FORMAT_VERSION = 1
_HEADER_KEY = "treecrowns"
# DeepForest's release settings: 400 px patches of 10 cm imagery, score 0.1, NMS 0.05.
_DEEPFOREST_RESOLUTION_M = 0.1
_DEEPFOREST_PATCH_SIZE = 400
_DEEPFOREST_ANCHORS_PER_LOCATION = 9


def way_of_detecting(test_time_augmentation: bool) -> str:
    """The name calibration figures use for each way: "one view" or "four views" (core.views)."""
    return "four views" if test_time_augmentation else "one view"


def check_retraining_learning_rate(rate: float | None) -> None:
    """Raise CheckpointError unless ``rate`` is None (not stated) or above 0 and at most 1."""
    if rate is not None and not 0 < rate <= 1:
        raise CheckpointError(f"the retraining learning rate must be above 0 and at most 1, got {rate}")


def check_view_scales(scales: tuple[float, ...]) -> None:
    """Raise CheckpointError unless ``scales`` is a non-empty list of multiples between 0.25 and 4."""
    if not scales or any(not (0.25 <= s <= 4.0) for s in scales):
        raise CheckpointError(f"view scales must be between 0.25 and 4, got {scales}")


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a checkpoint says about its model besides the weights."""

    architecture: ArchitectureSpec
    labels: tuple[str, ...]
    ground_resolution_m: float
    patch_size: int
    score_threshold: float = 0.3
    nms_threshold: float = 0.3
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # Detect on four turned views and fuse them (core.views); the score
    # threshold was chosen for the fused scores.
    test_time_augmentation: bool = False
    # With views, the four turns are run at each of these multiples of the ground
    # resolution (1.25: the raster read 1.25x coarser, crowns drawn smaller) and all
    # are fused: crown sizes differ from site to site, and no single scale suits all.
    view_scales: tuple[float, ...] = (1.0,)
    # The contrast normalisation of every patch at training and detection (core.contrast);
    # checkpoints that do not name one are used on the pixels as they are.
    contrast: str = Contrast.NONE.value
    # The learning rate at which this model learns a few hundred corrected crowns without
    # forgetting what it knew (the Train dialog's default for it). How far one step moves a
    # model depends on how it was trained: a longer-trained model needs a larger rate to learn
    # the same corrections (model/DIARY.md). None: core.training_settings' default.
    retraining_learning_rate: float | None = None
    source_format: str = "treecrowns"

    def __post_init__(self) -> None:
        check_view_scales(self.view_scales)
        check_retraining_learning_rate(self.retraining_learning_rate)
        try:
            object.__setattr__(self, "contrast", contrast_choice(self.contrast).value)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None

    def calibration_for(self, test_time_augmentation: bool) -> dict:
        """What calibration measured for one view or four fused views (F1, score threshold...); {} if not calibrated."""
        return self.metrics.get("calibration", {}).get(way_of_detecting(test_time_augmentation), {})

    def score_threshold_for(self, test_time_augmentation: bool) -> float:
        """The calibrated score threshold for one view or four fused views (their scores differ)."""
        if test_time_augmentation == self.test_time_augmentation:
            return self.score_threshold
        recorded = self.calibration_for(test_time_augmentation).get("score_threshold")
        return float(recorded) if recorded is not None else self.score_threshold

    def views_description(self) -> str:
        """The views in words, for the dock and logs: "four turned views" plus the resolutions they run at."""
        if self.view_scales == (1.0,):
            return "four turned views"
        metres = " and ".join(f"{self.ground_resolution_m * s:g}" for s in self.view_scales)
        return f"four turned views at {metres} m"

    def to_json(self) -> str:
        data = asdict(self)
        data["format_version"] = FORMAT_VERSION
        data.pop("source_format")
        return json.dumps(data, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "ModelMetadata":
        data = json.loads(text)
        version = data.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format version {version} is not supported by this plugin (expects {FORMAT_VERSION}); "
                "update the plugin"
            )
        return ModelMetadata(
            architecture=data["architecture"],
            labels=tuple(data["labels"]),
            ground_resolution_m=float(data["ground_resolution_m"]),
            patch_size=int(data["patch_size"]),
            score_threshold=float(data["score_threshold"]),
            nms_threshold=float(data["nms_threshold"]),
            image_mean=tuple(data["image_mean"]),
            image_std=tuple(data["image_std"]),
            provenance=data.get("provenance", {}),
            metrics=data.get("metrics", {}),
            test_time_augmentation=bool(data.get("test_time_augmentation", False)),
            view_scales=tuple(float(v) for v in data.get("view_scales", (1.0,))),
            contrast=data.get("contrast", Contrast.NONE.value),
            retraining_learning_rate=data.get("retraining_learning_rate"),
        )


@dataclass
class LoadedModel:
    """A network ready for inference or training, with its metadata."""

    network: RetinaNet
    metadata: ModelMetadata
    path: str | None = None


def new_model(metadata: ModelMetadata) -> LoadedModel:
    """A model with random weights, described by ``metadata``."""
    network = build_network(
        metadata.architecture, len(metadata.labels), metadata.patch_size, metadata.image_mean, metadata.image_std
    )
    return LoadedModel(network, metadata)


def save_checkpoint(model: LoadedModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically: a reader never sees a half-written file.

    Raises:
        OutputError: If the folder does not exist or is not writable.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot save the checkpoint: folder {path.parent} does not exist")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
    try:
        write_atomically(path, lambda name: save_file(tensors, name, metadata={_HEADER_KEY: model.metadata.to_json()}))
    except OSError as exc:
        raise OutputError(f"cannot save the checkpoint to {path}: {exc.strerror or exc}") from exc
    return path


def read_metadata(path: str | Path) -> ModelMetadata:
    """The metadata of a checkpoint without building its network (cheap, for the UI)."""
    return _load(Path(path), build=False).metadata


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load a treecrowns or DeepForest checkpoint from a file or folder.

    Raises:
        CheckpointError: If the path is missing or is not a checkpoint this plugin can read.
    """
    return _load(Path(path), build=True)


def _load(path: Path, build: bool) -> LoadedModel:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}; choose an existing model file")
    if path.is_dir():
        return _load_huggingface_folder(path, build)
    if path.suffix == ".safetensors":
        header = _safetensors_header(path)
        if _HEADER_KEY in header:
            metadata = ModelMetadata.from_json(header[_HEADER_KEY])
            return _with_weights(metadata, lambda: load_file(str(path)), str(path), build)
        if (path.parent / "config.json").exists():
            return _load_huggingface_folder(path.parent, build)
        raise CheckpointError(
            f"{path} is a safetensors file without treecrowns metadata and without a DeepForest config.json "
            "beside it; it cannot be used as a model"
        )
    return _load_torch_file(path, build)


def _safetensors_header(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid checkpoint (unreadable safetensors file: {exc})") from exc


def _with_weights(metadata: ModelMetadata, read_tensors, path: str, build: bool) -> LoadedModel:
    if not build:
        return LoadedModel(network=None, metadata=metadata, path=path)  # type: ignore[arg-type]
    model = new_model(metadata)
    try:
        state = read_tensors()
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read the weights in {path}: {exc}") from exc
    _load_state(model.network, state, path)
    model.path = path
    return model


def _load_state(network: RetinaNet, state: dict[str, torch.Tensor], path: str) -> None:
    expected = network.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or mismatched:
        detail = f"missing {missing[:3]}" if missing else f"wrong shape for {mismatched[:3]}"
        raise CheckpointError(
            f"the weights in {path} do not fit the architecture its metadata describes ({detail}); "
            "the file is damaged or was written by another program"
        )
    network.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def _deepforest_metadata(state: dict[str, torch.Tensor], label_dict: dict[str, int] | None, config: dict) -> ModelMetadata:
    bias = state.get("head.classification_head.cls_logits.bias")
    if bias is None:
        raise CheckpointError("not a DeepForest RetinaNet: no classification head weights found")
    num_classes = bias.shape[0] // _DEEPFOREST_ANCHORS_PER_LOCATION
    if label_dict:
        by_index = sorted(label_dict.items(), key=lambda item: item[1])
        labels = tuple(name for name, _ in by_index)
    else:
        labels = tuple(str(i) for i in range(num_classes))
    if len(labels) != num_classes:
        raise CheckpointError(
            f"the DeepForest label_dict names {len(labels)} classes but the weights have {num_classes}"
        )
    return ModelMetadata(
        architecture=deepforest_architecture(),
        labels=labels,
        ground_resolution_m=_DEEPFOREST_RESOLUTION_M,
        patch_size=int(config.get("patch_size", _DEEPFOREST_PATCH_SIZE)),
        score_threshold=float(config.get("score_thresh", 0.1)),
        nms_threshold=float(config.get("nms_thresh", 0.05)),
        provenance={"source": "DeepForest checkpoint"},
        source_format="deepforest",
    )


def _strip_prefix(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """DeepForest's Lightning module keeps the RetinaNet under ``model.``."""
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("model.") for k in tensors):
        return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return tensors


def _load_huggingface_folder(folder: Path, build: bool) -> LoadedModel:
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    if not config_path.exists() or not weights_path.exists():
        raise CheckpointError(
            f"{folder} is not a model folder: a DeepForest model folder holds config.json and model.safetensors"
        )
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {config_path}: {exc}") from exc
    _safetensors_header(weights_path)
    state = _strip_prefix(load_file(str(weights_path)))
    metadata = _deepforest_metadata(state, config.get("label_dict"), config)
    return _with_weights(metadata, lambda: state, str(folder), build)


def _load_torch_file(path: Path, build: bool) -> LoadedModel:
    try:
        content = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for non-checkpoint files
        raise CheckpointError(
            f"{path} is not a model checkpoint this plugin can read ({type(exc).__name__}); "
            "use a treecrowns .safetensors file, a DeepForest model folder, or a DeepForest .pt/.ckpt file"
        ) from exc
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} does not hold a state dict; it cannot be used as a model")
    label_dict = None
    if isinstance(content.get("hyper_parameters"), dict):
        label_dict = content["hyper_parameters"].get("label_dict")
    raw = content.get("state_dict", content)
    state = _strip_prefix(raw)
    metadata = _deepforest_metadata(state, label_dict, {})
    return _with_weights(metadata, lambda: state, str(path), build)


def with_provenance(metadata: ModelMetadata, **entries: Any) -> ModelMetadata:
    """A copy of ``metadata`` with provenance entries added or replaced."""
    return replace(metadata, provenance={**metadata.provenance, **entries})


def extend_labels(model: LoadedModel, labels: tuple[str, ...]) -> tuple[str, ...]:
    """Give the model extra classes for ``labels`` it does not know yet; returns the added labels.

    The classification layer grows by one output per anchor and new class; existing classes
    keep their weights, new ones start at the focal-loss prior (few positives), so the model
    still detects what it did while it learns the new class from the annotations.
    """
    new = tuple(label for label in dict.fromkeys(labels) if label not in model.metadata.labels)
    if not new:
        return ()
    head = model.network.head.classification_head
    old_layer, old_classes = head.cls_logits, head.num_classes
    anchors = old_layer.out_channels // old_classes
    classes = old_classes + len(new)
    layer = torch.nn.Conv2d(old_layer.in_channels, anchors * classes, kernel_size=3, stride=1, padding=1)
    prior = -math.log((1 - 0.01) / 0.01)
    with torch.no_grad():
        torch.nn.init.normal_(layer.weight, std=0.01)
        layer.bias.fill_(prior)
        for a in range(anchors):
            layer.weight[a * classes : a * classes + old_classes] = old_layer.weight[a * old_classes : (a + 1) * old_classes]
            layer.bias[a * classes : a * classes + old_classes] = old_layer.bias[a * old_classes : (a + 1) * old_classes]
    head.cls_logits = layer.to(old_layer.weight.device)
    head.num_classes = classes
    model.metadata = replace(model.metadata, labels=model.metadata.labels + new)
    return new
