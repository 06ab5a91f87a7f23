"""Retraining on a user's corrections: learn from every corrected place, judge on places not learnt from.

A retrained model is judged against the model it started from. Crowns split off the corrected
plots judge it badly: they lie beside what it learnt, where it is surer of itself than on the
rest of the site (model/DIARY.md, "Choosing on the corrections"). So when the corrections cover
two or more places (rasters, or separate reviewed areas of one raster), the places are cut into
two halves (the first rasters against the last; within a raster, west against east), a model is
retrained on each half with the same settings at half the epochs, and scored on the other half
beside the base model, both at the base model's score threshold. That asks the user's own
question: does learning from some of my places help on the others? The model kept then learns
from every place. The check costs about one more training.

With corrections in one place, ``core.training.train`` holds a strip of it out instead.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from .annotations import ImageAnnotations, crowns_in_areas
from .checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from .errors import Cancelled
from .evaluation import DEFAULT_IOU_THRESHOLD, evaluate
from .patches import Sample, load_samples
from .prediction import ProgressCallback, StopCheck, resolve_device
from .training import MIN_VALIDATION_CROWNS, EpochReport, TrainingResult, train
from .training_settings import TrainingSettings
from .validation import boxes_found

# How a retrained model's validation figures were measured, as its checkpoint records it.
CHECKED_ON = "half of the corrected places, by a model retrained on the other half"


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


def two_halves(places: Sequence[ImageAnnotations]) -> tuple[list, list] | None:
    """The places cut in two where the crowns balance best, keeping their order; None if a half would hold no crown."""
    crowns = [int(crowns_in_areas(place).sum()) for place in places]
    total = sum(crowns)
    best_cut, best_gap = None, None
    for cut in range(1, len(places)):
        first = sum(crowns[:cut])
        if first == 0 or first == total:
            continue
        gap = abs(total - 2 * first)
        if best_gap is None or gap < best_gap:
            best_cut, best_gap = cut, gap
    if best_cut is None:
        return None
    return list(places[:best_cut]), list(places[best_cut:])


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
    ``cross_checked`` is True; otherwise this is ``core.training.train``.

    Raises:
        Cancelled: If stopped before the kept model's first epoch finished; nothing is written then.
        The errors of ``core.training.train``.
    """
    halves = two_halves(correction_places(items)) if settings.validation_share > 0 else None
    if halves is None:
        return train(model, items, output_path, settings, progress=progress, should_stop=should_stop, on_epoch=on_epoch)
    labels, resolution = model.metadata.labels, model.metadata.ground_resolution_m
    scored = ([*load_samples(halves[1], labels, resolution)], [*load_samples(halves[0], labels, resolution)])
    crowns = sum(len(sample.boxes) for samples in scored for sample in samples)
    if crowns < MIN_VALIDATION_CROWNS:
        result = train(model, items, output_path, settings, validation_items=[], progress=progress,
                       should_stop=should_stop, on_epoch=on_epoch)
        note = (f"only {crowns} crowns were corrected; at least {MIN_VALIDATION_CROWNS} are needed to compare "
                "the new model with the base, so it was not compared; review more area to get that comparison")
        return replace(result, notes=(*result.notes, note))
    check_settings = replace(settings, epochs=max(1, math.ceil(settings.epochs / 2)))
    # Progress: the two check trainings take about as long together as the kept one.
    metrics, base_metrics = _check(model, halves, scored, check_settings, _part(progress, 0.0, 0.5), should_stop)
    result = train(model, items, output_path, settings, validation_items=[], progress=_part(progress, 0.5, 1.0),
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
    halves: tuple[list, list],
    scored: tuple[list[Sample], list[Sample]],
    settings: TrainingSettings,
    progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> tuple[dict, dict]:
    """Pooled figures of the models retrained on each half and scored on the other, and the base model's.

    ``scored[i]`` holds the samples of the half that ``halves[i]``'s model is scored on; every
    figure is at the base model's threshold, as the kept model detects.
    """
    device = resolve_device(settings.device)[0]
    threshold = base.metadata.score_threshold
    starting_point = copy.deepcopy(base)
    found_by_base = boxes_found(starting_point, [*scored[0], *scored[1]], device, threshold)
    references = {sample.name: sample.boxes.numpy() for samples in scored for sample in samples}
    found_by_retrained: dict = {}
    with tempfile.TemporaryDirectory(prefix="treecrowns-check-") as scratch:
        for index, (learnt, samples) in enumerate(zip(halves, scored)):
            half_model = copy.deepcopy(starting_point)
            part = _part(progress, index / 2, (index + 1) / 2, f"checking on places not learnt from ({index + 1}/2): ")
            try:
                result = train(half_model, learnt, Path(scratch) / f"half-{index}.safetensors", settings,
                               validation_items=[], progress=part, should_stop=should_stop)
            except Cancelled:
                result = None
            if result is None or result.cancelled:
                raise Cancelled("training was cancelled while checking the new model; no checkpoint was written")
            found_by_retrained.update(boxes_found(half_model, samples, device, threshold))
    return (evaluate(found_by_retrained, references, DEFAULT_IOU_THRESHOLD).as_dict(),
            evaluate(found_by_base, references, DEFAULT_IOU_THRESHOLD).as_dict())


def _part(progress: ProgressCallback | None, start: float, end: float, prefix: str = "") -> ProgressCallback | None:
    """A progress callback for one stage, mapped onto ``start``..``end`` of the whole."""
    if progress is None:
        return None
    return lambda fraction, message: progress(start + (end - start) * fraction, prefix + message)
