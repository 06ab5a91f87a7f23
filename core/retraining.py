"""Retraining on a user's corrections: learn from every corrected place, judge on places not learnt from.

A retrained model is judged against the model it started from. Crowns split off the corrected
plots judge it badly: they lie beside what it learnt, where it is surer of itself than on the
rest of the site (model/DIARY.md, "Choosing on the corrections"). So when the corrections cover
two or more places (rasters, or separate reviewed areas of one raster), the places, in order
(rasters as given, west to east within one), are cut into up to four groups of neighbours; for
each group a model is retrained on the other groups with the same settings at half the epochs
and scored on that group, beside the base model, both at the base model's score threshold. That
asks the user's own question: does learning from some of my places help on the others? The
model kept then learns from every place. With two places the check costs about one more training.

With corrections in one place, ``core.training.train`` holds a strip of it out instead.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from .annotations import ImageAnnotations, crowns_in_areas
from .checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from .errors import Cancelled
from .evaluation import DEFAULT_IOU_THRESHOLD, evaluate
from .patches import Sample, load_samples
from .prediction import ProgressCallback, StopCheck, fit_input_size, resolve_device
from .training import MIN_VALIDATION_CROWNS, EpochReport, TrainingResult, train
from .training_settings import TrainingSettings
from .validation import boxes_found

# At most this many groups of places are each left out of one check training: with more, each
# check model learns from more of the corrections, closer to the kept model, and the check costs more.
MOST_GROUPS = 4
# How a retrained model's validation figures were measured, as its checkpoint records it.
CHECKED_ON = "corrected places not learnt from: each group of them in turn, by a model retrained on the others"


def correction_places(items: Sequence[ImageAnnotations]) -> list[ImageAnnotations]:
    """Each reviewed area of each raster as an item of its own, west to east; a raster without areas is one place."""
    places = []
    for item in items:
        if item.regions is None:
            places.append(item)
            continue
        areas = sorted((area for area in item.regions if not area.is_empty), key=lambda a: (a.centroid.x, a.centroid.y))
        places.extend(replace(item, regions=(area,)) for area in areas)
    return places


def place_groups(places: Sequence[ImageAnnotations], most: int = MOST_GROUPS) -> list[list[ImageAnnotations]] | None:
    """The places in order, cut into up to ``most`` runs of neighbours with about as many crowns each.

    As many runs as there are places, up to ``most``, each holding at least one crown; None when
    not even two such runs can be made (the corrections are in one place, or their crowns are).
    """
    crowns = np.array([int(crowns_in_areas(place).sum()) for place in places])
    cumulative, total = np.cumsum(crowns), int(crowns.sum())
    for count in range(min(most, len(places)), 1, -1):
        cuts: list[int] = []
        for i in range(1, count):
            # Each cut goes where the crowns before it come closest to i / count of them, leaving a place for every later run.
            candidates = range((cuts[-1] if cuts else 0) + 1, len(places) - (count - i) + 1)
            cuts.append(min(candidates, key=lambda cut: abs(cumulative[cut - 1] - total * i / count)))
        bounds = list(zip([0, *cuts], [*cuts, len(places)]))
        if all(crowns[start:end].sum() > 0 for start, end in bounds):
            return [list(places[start:end]) for start, end in bounds]
    return None


def checked_groups(items: Sequence[ImageAnnotations], settings: TrainingSettings) -> list[list[ImageAnnotations]] | None:
    """The groups of corrected places ``retrain`` checks the new model on; None when it checks none that way."""
    return place_groups(correction_places(items)) if settings.validation_share > 0 else None


def retrain(
    model: LoadedModel,
    items: Sequence[ImageAnnotations],
    output_path: str | Path,
    settings: TrainingSettings = TrainingSettings(),
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> TrainingResult:
    """Retrain ``model`` in place on a user's corrections and write it to ``output_path``.

    With two or more corrected places (and a validation share above 0), the result's
    ``metrics`` and ``base_metrics`` come from the check described above and its
    ``cross_checked`` is True; otherwise this is ``core.training.train``. Progress runs once
    over the check and the kept training; ``on_epoch`` hears only the kept training's epochs.

    Raises:
        Cancelled: If stopped before the kept model's first epoch finished; nothing is written then.
        The errors of ``core.training.train``.
    """
    groups = checked_groups(items, settings)
    if groups is None:
        return train(model, items, output_path, settings, progress=progress, should_stop=should_stop, on_epoch=on_epoch)
    labels, resolution = model.metadata.labels, model.metadata.ground_resolution_m
    scored = [load_samples(group, labels, resolution) for group in groups]
    crowns = sum(len(sample.boxes) for samples in scored for sample in samples)
    if crowns < MIN_VALIDATION_CROWNS:
        result = train(model, items, output_path, settings, validation_items=[], progress=progress,
                       should_stop=should_stop, on_epoch=on_epoch)
        note = (f"only {crowns} crowns were corrected; at least {MIN_VALIDATION_CROWNS} are needed to compare "
                "the new model with the base, so it was not compared; review more area to get that comparison")
        return replace(result, notes=(*result.notes, note))
    check_settings = replace(settings, epochs=max(1, math.ceil(settings.epochs / 2)))
    # Progress in proportion to epochs: each check training runs half the kept one's.
    checked = len(groups) / (len(groups) + 2)
    metrics, base_metrics = _check(model, groups, scored, check_settings, _part(progress, 0.0, checked), should_stop)
    result = train(model, items, output_path, settings, validation_items=[], progress=_part(progress, checked, 1.0),
                   should_stop=should_stop, on_epoch=on_epoch)
    _record_check(Path(output_path), metrics, base_metrics)
    return replace(result, metrics=metrics, base_metrics=base_metrics, cross_checked=True)


def _record_check(path: Path, metrics: dict, base_metrics: dict) -> None:
    """Write the check's figures into the checkpoint as its validation figures, saying how they were measured."""
    kept = load_checkpoint(path)
    validation = {**metrics, "base_f1": base_metrics["f1"], "measured_on": CHECKED_ON}
    kept.metadata = replace(kept.metadata, metrics={**kept.metadata.metrics, "validation": validation})
    save_checkpoint(kept, path)


def _check(
    base: LoadedModel,
    groups: list[list[ImageAnnotations]],
    scored: list[list[Sample]],
    settings: TrainingSettings,
    progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> tuple[dict, dict]:
    """Pooled figures of models each retrained without one group of places and scored on it, and the base model's.

    ``scored[i]`` holds the samples of ``groups[i]``; every figure is at the base model's
    threshold, as the kept model detects.
    """
    device = resolve_device(settings.device)[0]
    threshold = base.metadata.score_threshold
    starting_point = copy.deepcopy(base)
    # Scored on the device the check trains on, taking patches as they are, as training scores.
    starting_point.network.to(device)
    fit_input_size(starting_point, base.metadata.patch_size)
    found_by_base = boxes_found(starting_point, [sample for samples in scored for sample in samples], device, threshold)
    references = {sample.name: sample.boxes.numpy() for samples in scored for sample in samples}
    found_by_retrained: dict = {}
    with tempfile.TemporaryDirectory(prefix="treecrowns-check-") as scratch:
        for index, samples in enumerate(scored):
            learnt = [place for other, group in enumerate(groups) if other != index for place in group]
            check_model = copy.deepcopy(starting_point)
            part = _part(progress, index / len(groups), (index + 1) / len(groups),
                         f"checking on places not learnt from ({index + 1}/{len(groups)}): ")
            try:
                result = train(check_model, learnt, Path(scratch) / f"without-{index}.safetensors", settings,
                               validation_items=[], progress=part, should_stop=should_stop)
            except Cancelled:
                result = None
            if result is None or result.cancelled:
                raise Cancelled("training was cancelled while checking the new model; no checkpoint was written")
            found_by_retrained.update(boxes_found(check_model, samples, device, threshold))
    return (evaluate(found_by_retrained, references, DEFAULT_IOU_THRESHOLD).as_dict(),
            evaluate(found_by_base, references, DEFAULT_IOU_THRESHOLD).as_dict())


def _part(progress: ProgressCallback | None, start: float, end: float, prefix: str = "") -> ProgressCallback | None:
    """A progress callback for one stage, mapped onto ``start``..``end`` of the whole."""
    if progress is None:
        return None
    return lambda fraction, message: progress(start + (end - start) * fraction, prefix + message)
