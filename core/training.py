"""Training a detector on annotated rasters, with per-epoch validation and safe checkpoints.

The training loop: patches come from core.patches, scoring from core.validation, settings from
core.training_settings. After every epoch the model is scored on the held-out crowns. With plots
held out apart (a model build), the best epoch is written to the output checkpoint atomically,
together with the score threshold that gave its best F1; crowns held out of a user's corrections
only measure each epoch, and the last one is written with the base model's threshold. The whole
training state is saved after every epoch so that a stopped run goes on. A user's corrections go
through core.retraining, which judges the new model on corrected places it did not learn from.
"""

import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from shapely.geometry import box as rectangle

from .annotations import ImageAnnotations, annotated_areas, crowns_in_areas
from .checkpoint import LoadedModel, ModelMetadata, save_checkpoint
from .errors import AnnotationError, Cancelled, CheckpointError, TreecrownsError
from .patches import Sample, load_samples, patch_source, random_patch
from .prediction import (
    ProgressCallback,
    StopCheck,
    computes_bfloat16,
    fit_input_size,
    resolve_device,
)
from .raster import RasterReader
from .style_mixing import attach_style_mixing
from .training_settings import TrainingSettings, with_learning_rate_for
from .training_state import load_training_state, remove_training_state, save_training_state
from .validation import thresholds_only, validate

# An epoch is at least this many steps, so that a few corrected plots still train the model.
_MIN_STEPS_PER_EPOCH = 20
# Below this many validation crowns, epochs are not chosen and thresholds not tuned on them.
MIN_VALIDATION_CROWNS = 30
# Below this many crowns, fine-tuning often made the model worse on the site's other plots.
_FEW_CROWNS = 15
# Settings added after training states were first saved, with the value that trains as before.
_SETTINGS_ADDED_OFF = {"bfloat16": False}


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; validation fields are None when nothing was held out."""

    epoch: int
    train_loss: float
    classification_loss: float
    regression_loss: float
    precision: float | None
    recall: float | None
    f1: float | None
    score_threshold: float | None
    seconds: float
    saved: bool


@dataclass(frozen=True)
class TrainingResult:
    checkpoint_path: str
    history: tuple[EpochReport, ...]
    # The epoch written: the best on plots held out apart, else the last one finished.
    best_epoch: int
    cancelled: bool = False
    metrics: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # The starting model's figures on the same held-out crowns, scored the same way before the
    # first step; {} when too few crowns were held out to measure either.
    base_metrics: dict = field(default_factory=dict)
    # True when the figures come from models retrained without part of the corrected places and
    # scored there (core.retraining), not from crowns held out of the kept model's training.
    cross_checked: bool = False

    @property
    def worse_than_base(self) -> bool:
        """Whether the kept model scores a lower F1 than the model it started from on the held-out crowns."""
        f1, base_f1 = self.metrics.get("f1"), self.base_metrics.get("f1")
        return f1 is not None and base_f1 is not None and f1 < base_f1

    def comparison_with_base(self) -> str | None:
        """The retrained model against its base on the held-out crowns, as a sentence; None when not measured."""
        if not self.metrics or not self.base_metrics:
            return None
        f1, base_f1 = self.metrics["f1"], self.base_metrics["f1"]
        crowns = self.base_metrics.get("true_positives", 0) + self.base_metrics.get("missed", 0)
        if self.cross_checked:
            figures = (f"Retrained without each group of the corrected places in turn and scored on it, the model "
                       f"scores F1 {f1:.3f} on {crowns} crowns")
            if self.worse_than_base:
                return (f"{figures}, below the {base_f1:.3f} of the model it started from: keep detecting with that "
                        "model, or correct more places and train again")
            return f"{figures}, against {base_f1:.3f} for the model it started from"
        if self.worse_than_base:
            return (f"The retrained model scores F1 {f1:.3f} on the {crowns} crowns held out of training, below the "
                    f"{base_f1:.3f} of the model it started from: keep detecting with that model, or correct more crowns "
                    "and train again")
        return f"On the {crowns} crowns held out of training, F1 {f1:.3f} against {base_f1:.3f} for the model it started from"


def split_validation(items: Sequence[ImageAnnotations], share: float, seed: int) -> tuple[list, list]:
    """Hold out ``share`` of the corrections: whole images when there are enough, else a strip of each.

    With at least ``1 / share`` images (five at a fifth), ``share`` of them is held out whole.
    Fewer images cannot make that share: two corrected plots would lose one, half the crowns,
    to validation. Then each image keeps the left ``1 - share`` of each annotated area for
    training and validates on the right-hand strip, so every image is learnt from.
    """
    items = list(items)
    if share <= 0:
        return items, []
    count = int(len(items) * share + 1e-9)  # whole images only, never more than the share
    if count >= 1:
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)
        held = set(order[:min(count, len(items) - 1)])
        return [it for i, it in enumerate(items) if i not in held], [it for i, it in enumerate(items) if i in held]
    kept, validated = [], []
    for item in items:
        left, right = _strips(item, share)
        if left:
            kept.append(replace(item, regions=left))
        if right:
            validated.append(replace(item, regions=right))
    return kept, validated


def _strips(item: ImageAnnotations, share: float) -> tuple[tuple, tuple]:
    """The left ``1 - share`` and the right-hand ``share`` of each of the item's annotated areas."""
    with RasterReader(item.image_path) as reader:
        width, height = reader.info.width, reader.info.height
    left_parts, right_parts = [], []
    for w, area in annotated_areas(item, width, height):
        cut = w.col_off + round(w.width * (1.0 - share))
        left, right = rectangle(w.col_off, w.row_off, cut, w.row_end), rectangle(cut, w.row_off, w.col_end, w.row_end)
        left_parts.append(left if area is None else area.intersection(left))
        right_parts.append(right if area is None else area.intersection(right))
    return tuple(a for a in left_parts if a.area > 0), tuple(a for a in right_parts if a.area > 0)


def _parameter_groups(network: torch.nn.Module, settings: TrainingSettings) -> list[dict]:
    """The trunk's weights at ``trunk_learning_rate_factor`` times the learning rate, the rest at 1x.

    A factor of 0 freezes the trunk (no gradients, so each step is cheaper). Every call
    sets ``requires_grad`` on all weights, so a model trained twice follows the latest settings.
    LambdaLR scales each group's own starting rate, so the ratio holds through the schedule.
    """
    trunk = getattr(getattr(network, "backbone", None), "body", None)
    trunk_ids = {id(p) for p in trunk.parameters()} if trunk is not None else set()
    trunk_params = [p for p in network.parameters() if id(p) in trunk_ids]
    other_params = [p for p in network.parameters() if id(p) not in trunk_ids]
    for p in other_params:
        p.requires_grad_(True)
    for p in trunk_params:
        p.requires_grad_(settings.trunk_learning_rate_factor > 0)
    groups = [{"params": other_params}]
    if trunk_params and settings.trunk_learning_rate_factor > 0:
        groups.append({"params": trunk_params, "lr": settings.learning_rate * settings.trunk_learning_rate_factor})
    return groups


def _weight_average(network: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """A copy of ``network`` that follows its weights and BatchNorm statistics as an exponential average.

    The decay ramps up over the first steps ((1 + n) / (10 + n), capped at ``decay``), so that
    the random starting weights do not linger in the average for thousands of steps.
    """

    def average(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        step_decay = min(decay, (1 + int(count)) / (10 + int(count)))
        return averaged * step_decay + current * (1 - step_decay)

    averaged = torch.optim.swa_utils.AveragedModel(network, avg_fn=average, use_buffers=True)
    averaged.module.eval()
    return averaged


def trainable_crowns(items: Sequence[ImageAnnotations]) -> int:
    """How many crowns training learns from: all of them, or those centred in the reviewed areas."""
    return sum(int(crowns_in_areas(item).sum()) for item in items)


def check_labels(model: LoadedModel, items: Sequence[ImageAnnotations]) -> None:
    """Raise a clear error when the annotations name classes the model does not have."""
    found = sorted({label for item in items for label in item.labels})
    unknown = [label for label in found if label not in model.metadata.labels]
    if unknown:
        raise CheckpointError(
            f"the annotations use {len(found)} class(es) {found} but the base model has {len(model.metadata.labels)} "
            f"{list(model.metadata.labels)}; fix the 'label' values, or let training add the new classes "
            "(NEW_LABELS in treecrowns:train, 'Add new labels' in the Train dialog)"
        )


def _training_fingerprint(
    model: LoadedModel, settings: TrainingSettings, train_samples: Sequence[Sample], val_samples: Sequence[Sample], steps: int
) -> dict:
    """What makes two trainings the same one: settings, images, model and its starting weights.

    The device is left out: a training stopped on a GPU may go on on the CPU. A setting added
    after states were saved is left out while it is off, so those states still go on.
    """
    digest = hashlib.sha256()
    for name, tensor in model.network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    meta = model.metadata
    return {
        "settings": {k: v for k, v in vars(settings).items() if k != "device" and _SETTINGS_ADDED_OFF.get(k, ...) != v},
        "steps_per_epoch": steps,
        "train_images": [s.name for s in train_samples],
        "validation_images": [s.name for s in val_samples],
        "labels": list(meta.labels),
        "ground_resolution_m": meta.ground_resolution_m,
        "contrast": meta.contrast,
        "patch_size": meta.patch_size,
        "starting_weights": digest.hexdigest(),
    }


def _training_and_validation_samples(
    meta: ModelMetadata,
    train_items: Sequence[ImageAnnotations],
    validation_items: Sequence[ImageAnnotations] | None,
    settings: TrainingSettings,
) -> tuple[list[Sample], list[Sample], list[str]]:
    """The samples to train and to validate on, and a note when the held-out share was too small to keep.

    Without ``validation_items``, ``settings.validation_share`` of the corrections is held out
    (``split_validation``); a handful of held-out crowns measure nothing, so then they are trained on instead.
    """
    def samples(items: Sequence[ImageAnnotations]) -> list[Sample]:
        return load_samples(items, meta.labels, meta.ground_resolution_m) if items else []

    if validation_items is not None:
        return samples(train_items), samples(validation_items), []
    kept, held = split_validation(train_items, settings.validation_share, settings.seed)
    val_samples = samples(held)
    held_crowns = sum(len(sample.boxes) for sample in val_samples)
    if held and held_crowns < MIN_VALIDATION_CROWNS:
        note = (
            f"only {held_crowns} crowns would have been held out for validation (at least {MIN_VALIDATION_CROWNS} "
            "are needed for a meaningful figure), so all crowns were used for training and the base "
            "model's score threshold was kept; review more area to get validation figures"
        )
        return samples(train_items), [], [note]
    return samples(kept), val_samples, []


def _warmup_then_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning rate's factor at each step: a linear warm-up, then a cosine decay to zero at the last step."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress_share = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_share)))
    return factor


def uses_bfloat16(settings: TrainingSettings) -> bool:
    """Whether training with ``settings`` runs in bfloat16: as they say, or else where the device has bfloat16 units."""
    if settings.bfloat16 is not None:
        return settings.bfloat16
    return computes_bfloat16(resolve_device(settings.device)[0])


def train(
    model: LoadedModel,
    train_items: Sequence[ImageAnnotations],
    output_path: str | Path,
    settings: TrainingSettings = TrainingSettings(),
    validation_items: Sequence[ImageAnnotations] | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    state_path: str | Path | None = None,
) -> TrainingResult:
    """Train ``model`` in place and write its chosen (or last) epoch to ``output_path``.

    Args:
        model: The starting point (a loaded checkpoint or a new random model).
        train_items: Annotated rasters. If ``validation_items`` is None, a share of
            them (``settings.validation_share``) is held out for validation, unless that
            share holds too few crowns to measure anything (then all are trained on and
            ``TrainingResult.notes`` says so).
        output_path: Where the checkpoint goes; written after every epoch, or with plots held out
            apart only when an epoch improves on the best so far.
        settings: Schedule, augmentation and device. Without a learning rate, the one the
            model's checkpoint states for retraining (``with_learning_rate_for``).
        validation_items: Explicit held-out rasters. With them (and at least 30 crowns) the
            best epoch and its score threshold are kept; without them, the last epoch and the
            base model's threshold.
        progress: Called with (fraction, message) after every step.
        should_stop: Polled every step; on True training stops and the last saved checkpoint stays.
        on_epoch: Called after every epoch with its report.
        state_path: Where to keep the training's full state after every epoch
            (``core.training_state``). If the file already holds the state of this same
            training, stopped or cancelled, training goes on from the epoch after it and
            the history holds every epoch; the file is removed when training completes.

    Raises:
        AnnotationError: If there is nothing to train on.
        CheckpointError: If the annotations' classes do not fit the model.
        Cancelled: If stopped before any checkpoint was written.
        TreecrownsError: If ``state_path`` holds another training's state.
    """
    crowns = trainable_crowns(train_items)
    if crowns == 0:
        drawn = sum(len(item.labels) for item in train_items)
        if drawn:
            raise AnnotationError(
                f"none of the {drawn} annotated crowns lies inside the reviewed areas, so there is nothing to train on; "
                "mark the areas you reviewed, or train without areas"
            )
        raise AnnotationError("there are no annotated crowns to train on; draw or import some boxes first")
    check_labels(model, train_items)
    settings = with_learning_rate_for(settings, model.metadata)
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    device, _note = resolve_device(settings.device)
    settings = replace(settings, bfloat16=uses_bfloat16(settings))
    meta = model.metadata
    notes: list[str] = []
    if crowns < _FEW_CROWNS:
        notes.append(
            f"only {crowns} crowns to learn from: retraining on fewer than {_FEW_CROWNS} often makes the model "
            "worse on the rest of the site; review a larger area and compare the two models with Evaluate"
        )
    train_samples, val_samples, split_note = _training_and_validation_samples(meta, train_items, validation_items, settings)
    notes.extend(split_note)
    patch = meta.patch_size
    weights = [max(1.0, s.image.shape[1] * s.image.shape[2] / patch**2) for s in train_samples]
    steps = settings.steps_per_epoch or max(_MIN_STEPS_PER_EPOCH, math.ceil(2 * sum(weights) / settings.batch_size))
    total_steps = steps * settings.epochs

    # channels_last: the convolutions' backward pass runs about 1.4x faster on CPU (benchmarked).
    network = model.network.to(device=device, memory_format=torch.channels_last)
    # torchvision's RetinaNet reads its box loss from this attribute; its constructor takes none.
    network.head.regression_head._loss_type = settings.box_loss
    fit_input_size(model, patch)
    # What is validated and saved: the network itself, or a running average of it.
    averaged = _weight_average(network, settings.weight_average_decay) if settings.weight_average_decay else None
    kept_network = network if averaged is None else averaged.module
    param_groups = _parameter_groups(network, settings)
    params = [p for group in param_groups for p in group["params"]]
    optimiser = torch.optim.SGD(param_groups, lr=settings.learning_rate, momentum=0.9, weight_decay=settings.weight_decay)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_then_cosine(settings.warmup_steps, total_steps))
    history: list[EpochReport] = []
    measured = sum(len(sample.boxes) for sample in val_samples) >= MIN_VALIDATION_CROWNS
    # The epoch and the score threshold are chosen only on held-out rasters given apart (a model
    # builder's plots from many sites). Crowns split off the corrections come from the very plots
    # being learnt: the model is surer there than on the rest of the site, and the epochs and
    # thresholds chosen there lost crowns elsewhere (model/DIARY.md, "Choosing on the corrections").
    # There they only measure the new model against its base, at the base model's threshold, and
    # the last epoch is kept, as with too few crowns to measure anything.
    choose = measured and validation_items is not None
    fixed = None if choose else meta.score_threshold
    # Without calibration the base model's threshold for each way of detecting (one view, views)
    # is kept, not its figures: they describe the base model.
    inherited = {} if choose else thresholds_only(meta.metrics.get("calibration", {}))
    # The yardstick for "never worse": the starting model on the same crowns, scored the same way;
    # in a forked random state, so that the training draws exactly what it drew without it.
    with torch.random.fork_rng(devices=[]):
        base_metrics = validate(model, val_samples, device, fixed)[0] if measured else {}
    best_f1, best_epoch, saved_any = -1.0, 0, False
    best_metrics: dict = {}
    step = 0
    # Drawn from their own generator: turning style mixing on leaves the patches' draws as they were.
    mixing_rng = np.random.default_rng(settings.seed + 1)
    fingerprint = _training_fingerprint(model, settings, train_samples, val_samples, steps) if state_path else {}
    resumed = load_training_state(state_path, fingerprint) if state_path else None
    if resumed is not None:
        if resumed["saved_any"] and not Path(output_path).exists():
            raise TreecrownsError(
                f"the training state {state_path} goes with the checkpoint {output_path}, which is gone; "
                "delete the state to train from the start"
            )
        network.load_state_dict(resumed["network"])
        if averaged is not None:
            averaged.load_state_dict(resumed["averaged"])
        optimiser.load_state_dict(resumed["optimiser"])
        scheduler.load_state_dict(resumed["scheduler"])
        rng.setstate(resumed["python_random"])
        torch.set_rng_state(resumed["torch_random"])
        mixing_rng.bit_generator.state = resumed["mixing_random"]
        step, best_f1, best_epoch, saved_any = resumed["step"], resumed["best_f1"], resumed["best_epoch"], resumed["saved_any"]
        best_metrics = resumed["best_metrics"]
        model.metadata = ModelMetadata.from_json(resumed["metadata"])
        history = [EpochReport(**report) for report in resumed["history"]]
    first_epoch = len(history) + 1
    mixing = attach_style_mixing(network, settings.style_mixing, mixing_rng) if settings.style_mixing else []
    try:
        for epoch in range(first_epoch, settings.epochs + 1):
            started = time.perf_counter()
            network.train()
            if settings.freeze_batchnorm:
                for module in network.modules():
                    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                        module.eval()
            sums = np.zeros(3)
            for _ in range(steps):
                if should_stop is not None and should_stop():
                    if not saved_any:
                        raise Cancelled("training was cancelled before the first epoch finished; no checkpoint was written")
                    return TrainingResult(
                        str(output_path), tuple(history), best_epoch, cancelled=True, metrics=best_metrics,
                        notes=tuple(notes), base_metrics=base_metrics,
                    )
                chosen = rng.choices(range(len(train_samples)), weights, k=settings.batch_size)
                batch = [
                    random_patch(patch_source(train_samples, i, weights, patch, settings, rng), patch, settings, rng,
                                  model.metadata.contrast)
                    for i in chosen
                ]
                images = [img.to(device) for img, _ in batch]
                targets = [{k: v.to(device) for k, v in t.items()} for _, t in batch]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bfloat16):
                    losses = network(images, targets)
                loss = losses["classification"] + losses["bbox_regression"]
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 10.0)
                optimiser.step()
                scheduler.step()
                if averaged is not None:
                    averaged.update_parameters(network)
                step += 1
                sums += [loss.item(), losses["classification"].item(), losses["bbox_regression"].item()]
                if progress is not None:
                    progress(step / total_steps, f"epoch {epoch}/{settings.epochs}, step {step}/{total_steps}, loss {loss.item():.3f}")
            means = sums / steps
            kept_model = LoadedModel(kept_network, model.metadata)
            metrics, threshold = validate(kept_model, val_samples, device, fixed) if val_samples else ({}, None)
            f1 = metrics.get("f1")
            improved = not choose or f1 > best_f1
            if improved:
                best_f1, best_epoch = (f1 if f1 is not None else best_f1), epoch
                best_metrics = {**metrics, "epoch": epoch} if metrics else {}
                new_meta = replace(
                    meta,
                    score_threshold=threshold if threshold is not None else meta.score_threshold,
                    metrics={**({"validation": best_metrics} if metrics else {}),
                             **({"calibration": inherited} if inherited else {})},
                )
                save_checkpoint(LoadedModel(kept_network, new_meta), output_path)
                model.metadata = new_meta
                saved_any = True
            report = EpochReport(
                epoch, float(means[0]), float(means[1]), float(means[2]),
                metrics.get("precision"), metrics.get("recall"), f1, threshold,
                time.perf_counter() - started, improved,
            )
            history.append(report)
            if state_path:
                save_training_state(state_path, fingerprint, {
                    "network": network.state_dict(),
                    "averaged": averaged.state_dict() if averaged is not None else {},
                    "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "python_random": rng.getstate(),
                    "torch_random": torch.get_rng_state(),
                    "mixing_random": mixing_rng.bit_generator.state,
                    "step": step, "best_f1": best_f1, "best_epoch": best_epoch, "saved_any": saved_any,
                    "best_metrics": best_metrics,
                    "metadata": model.metadata.to_json(),
                    "history": [vars(r) for r in history],
                })
            if on_epoch is not None:
                on_epoch(report)
        if state_path:
            remove_training_state(state_path)
        return TrainingResult(str(output_path), tuple(history), best_epoch, metrics=best_metrics, notes=tuple(notes),
                              base_metrics=base_metrics)
    finally:
        for hook in mixing:
            hook.remove()
