"""Adapters from QGIS's progress and cancel mechanisms to the engine's callbacks."""

from __future__ import annotations

from qgis.core import QgsProcessingFeedback, QgsTask

from ..core.prediction import ProgressCallback, StopCheck


def from_processing(feedback: QgsProcessingFeedback | None) -> tuple[ProgressCallback, StopCheck]:
    """Progress and cancel for a Processing algorithm."""
    if feedback is None:
        return (lambda fraction, message: None), (lambda: False)

    logged = [-1]

    def progress(fraction: float, message: str) -> None:
        feedback.setProgress(100.0 * fraction)
        # The log gets a line every tenth of the run, not every batch (thousands on a large orthophoto).
        tenth = int(fraction * 10)
        if tenth > logged[0]:
            logged[0] = tenth
            feedback.pushInfo(message)

    return progress, feedback.isCanceled


def from_task(task: QgsTask) -> tuple[ProgressCallback, StopCheck]:
    """Progress and cancel for a background task (shown in QGIS's task manager)."""

    def progress(fraction: float, message: str) -> None:
        task.setProgress(100.0 * fraction)

    return progress, task.isCanceled
