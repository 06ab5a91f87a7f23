"""Adapters from QGIS's progress and cancel mechanisms to the engine's callbacks."""

from __future__ import annotations

from qgis.core import QgsProcessingFeedback, QgsTask

from ..core.prediction import ProgressCallback, StopCheck, every_tenth


def from_processing(feedback: QgsProcessingFeedback | None) -> tuple[ProgressCallback, StopCheck]:
    """Progress and cancel for a Processing algorithm."""
    if feedback is None:
        return (lambda fraction, message: None), (lambda: False)

    log_line = every_tenth(feedback.pushInfo)

    def progress(fraction: float, message: str) -> None:
        feedback.setProgress(100.0 * fraction)
        log_line(fraction, message)

    return progress, feedback.isCanceled


def from_task(task: QgsTask) -> tuple[ProgressCallback, StopCheck]:
    """Progress and cancel for a background task (shown in QGIS's task manager)."""

    def progress(fraction: float, message: str) -> None:
        task.setProgress(100.0 * fraction)

    return progress, task.isCanceled
