"""Installing the engine's packages as a QGIS background task (it must not import torch itself)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .dependencies import InstallCancelled, InstallError, install


@dataclass(frozen=True)
class InstallOutcome:
    installed: tuple[str, ...]
    error: str | None
    cancelled: bool


class InstallTask(QgsTask):
    """Run the two pip steps of gis.dependencies.install; each pip line goes to the main thread."""

    logLine = pyqtSignal(str)  # noqa: N815 - Qt signal naming
    stepChanged = pyqtSignal(str)  # noqa: N815

    def __init__(self, folder: Path, index_url: str, on_done: Callable[[InstallOutcome], None]) -> None:
        super().__init__("Installing the tree-crown engine's packages", QgsTask.CanCancel)
        self.folder = folder
        self.index_url = index_url
        self.on_done = on_done
        self._outcome = InstallOutcome((), None, False)

    def run(self) -> bool:
        def progress(fraction: float, message: str) -> None:
            self.setProgress(100.0 * fraction)
            self.stepChanged.emit(message)

        try:
            installed = install(self.folder, index_url=self.index_url, log=self.logLine.emit, progress=progress,
                                should_stop=self.isCanceled)
        except InstallCancelled as exc:
            self._outcome = InstallOutcome((), str(exc), True)
            return False
        except InstallError as exc:
            self._outcome = InstallOutcome((), str(exc), False)
            return False
        self._outcome = InstallOutcome(tuple(installed), None, False)
        return True

    def finished(self, result: bool) -> None:  # main thread
        if not result and self._outcome.error is None:
            self._outcome = InstallOutcome((), "the install was cancelled; nothing was installed", True)
        self.on_done(self._outcome)
