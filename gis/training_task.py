"""Retraining as a QGIS background task, reporting every epoch to the main thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..core.annotations import ImageAnnotations
from ..core.checkpoint import extend_labels, load_checkpoint, with_provenance
from ..core.errors import Cancelled, TreecrownsError
from ..core.retraining import retrain
from ..core.training import EpochReport, TrainingResult
from ..core.training_settings import TrainingSettings
from .feedback import from_task


@dataclass(frozen=True)
class TrainingOutcome:
    result: TrainingResult | None
    error: str | None
    cancelled: bool


class TrainingTask(QgsTask):
    """Retrain a base checkpoint on a user's corrections (``core.retraining``); the last finished epoch is kept on disk."""

    epochFinished = pyqtSignal(object)  # noqa: N815 - Qt signal naming

    def __init__(
        self,
        base_model: str,
        items: list[ImageAnnotations],
        output_path: Path,
        settings: TrainingSettings,
        training_data: dict,
        on_done: Callable[[TrainingOutcome], None],
        add_new_labels: bool = False,
    ) -> None:
        super().__init__(f"Training tree-crown model {output_path.name}", QgsTask.CanCancel)
        self.base_model = base_model
        self.items = items
        self.output_path = output_path
        self.settings = settings
        self.training_data = training_data
        self.on_done = on_done
        self.add_new_labels = add_new_labels
        self._outcome: TrainingOutcome | None = None

    def run(self) -> bool:
        progress, should_stop = from_task(self)
        try:
            model = load_checkpoint(self.base_model)
            if self.add_new_labels:
                extend_labels(model, tuple(label for item in self.items for label in item.labels))
            model.metadata = with_provenance(model.metadata, parent=self.base_model, training_data=self.training_data)
            result = retrain(
                model, self.items, self.output_path, self.settings,
                progress=progress, should_stop=should_stop, on_epoch=self._report,
            )
            self._outcome = TrainingOutcome(result, None, result.cancelled)
            return True
        except Cancelled:
            self._outcome = TrainingOutcome(None, None, True)
        except TreecrownsError as exc:
            self._outcome = TrainingOutcome(None, str(exc), False)
        except Exception as exc:  # report anything else instead of taking QGIS down
            self._outcome = TrainingOutcome(None, f"unexpected error: {type(exc).__name__}: {exc}", False)
        return False

    def _report(self, report: EpochReport) -> None:
        self.epochFinished.emit(report)

    def finished(self, result: bool) -> None:
        self.on_done(self._outcome or TrainingOutcome(None, None, True))
