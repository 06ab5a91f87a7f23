"""Detection as a QGIS background task: the engine runs in a worker thread, QGIS stays responsive.

``run()`` touches no widget and no project layer: it runs the engine and writes
the GeoPackage to its final path atomically. ``finished()`` runs on the main
thread and hands the result to the caller, who adds the layer to the project.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsProject, QgsTask

from ..core.checkpoint import load_checkpoint
from ..core.errors import Cancelled, TreecrownsError
from ..core.prediction import DetectionSettings, detect
from .feedback import from_task
from .layers import write_detections


@dataclass(frozen=True)
class DetectionOutcome:
    """What a finished task reports back to the main thread."""

    output_path: Path | None
    crown_count: int
    warnings: tuple[str, ...]
    error: str | None
    cancelled: bool


class DetectionTask(QgsTask):
    """Find crowns in one raster and write them to a GeoPackage."""

    def __init__(
        self,
        raster_path: str,
        model_path: str,
        output_path: Path,
        settings: DetectionSettings,
        on_done: Callable[[DetectionOutcome], None],
    ) -> None:
        super().__init__(f"Detecting tree crowns in {Path(raster_path).name}", QgsTask.CanCancel)
        self.raster_path = raster_path
        self.model_path = model_path
        self.output_path = output_path
        self.settings = settings
        self.on_done = on_done
        self._outcome: DetectionOutcome | None = None
        # Crowns found for a project that was closed meanwhile belong nowhere: stop, write nothing.
        QgsProject.instance().cleared.connect(self.cancel)

    def run(self) -> bool:
        progress, should_stop = from_task(self)
        try:
            model = load_checkpoint(self.model_path)
            detections = detect(self.raster_path, model, self.settings, progress, should_stop)
            if self.isCanceled():
                raise Cancelled("detection was cancelled; no layer was written")
            write_detections(detections, self.output_path, str(self.model_path))
            self._outcome = DetectionOutcome(self.output_path, len(detections), detections.warnings, None, False)
            return True
        except Cancelled:
            self._outcome = DetectionOutcome(None, 0, (), None, True)
        except TreecrownsError as exc:
            self._outcome = DetectionOutcome(None, 0, (), str(exc), False)
        except Exception as exc:  # report anything else instead of taking QGIS down
            self._outcome = DetectionOutcome(None, 0, (), f"unexpected error: {type(exc).__name__}: {exc}", False)
        return False

    def finished(self, result: bool) -> None:
        QgsProject.instance().cleared.disconnect(self.cancel)
        outcome = self._outcome or DetectionOutcome(None, 0, (), None, True)
        self.on_done(outcome)
