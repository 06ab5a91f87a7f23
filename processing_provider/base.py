"""What every treecrowns Processing algorithm shares."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterVectorLayer,
)


class TreecrownsAlgorithm(QgsProcessingAlgorithm):
    """A Processing algorithm whose id, title and help text are class attributes."""

    NAME = ""
    TITLE = ""
    HELP = ""

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:
        return self.TITLE

    def shortHelpString(self) -> str:
        return self.HELP

    def createInstance(self) -> "TreecrownsAlgorithm":
        return type(self)()


def areas_parameter(name: str, title: str = "Fully annotated areas") -> QgsProcessingParameterVectorLayer:
    """The optional polygon layer of fully annotated (reviewed) areas."""
    return QgsProcessingParameterVectorLayer(name, title, [QgsProcessing.TypeVectorPolygon], optional=True)


def check_output_file(path: str, context) -> None:
    """Refuse, before any work is done, an output that cannot be written or would break an open layer.

    ``path`` may be a memory or temporary destination, which needs no check.
    """
    if not path or path.startswith(("memory:", "TEMPORARY_OUTPUT")) or "://" in path:
        return
    target = Path(path.split("|")[0])
    folder = target.parent
    if not folder.is_dir():
        raise QgsProcessingException(f"the output folder {folder} does not exist: create it or choose another output")
    if not os.access(folder, os.W_OK) or _on_read_only_filesystem(folder):
        raise QgsProcessingException(f"the output folder {folder} is read-only: choose a folder you can write to")
    project = context.project() if context is not None else None
    if target.exists() and project is not None:
        for layer in project.mapLayers().values():
            if Path(layer.source().split("|")[0]) == target:
                raise QgsProcessingException(
                    f"{target.name} is open as the layer '{layer.name()}': writing over it would break that layer; "
                    "choose another file name, or remove the layer from the project first"
                )


def _on_read_only_filesystem(folder: Path) -> bool:
    """Whether ``folder`` lies on a file system mounted read-only (where even root cannot write)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def write_to_sink(sink, features, destination: str) -> None:
    """Add ``features`` to a Processing sink; on a failed write (a full disk, say) remove the half-written file.

    Raises:
        QgsProcessingException: Naming the file and what to do.
    """
    for feature in features:
        if not sink.addFeature(feature, QgsFeatureSink.FastInsert):
            reason = sink.lastError() if hasattr(sink, "lastError") else ""
            remove_output_file(destination)
            raise QgsProcessingException(
                f"cannot write the crowns to {destination}: {reason or 'the disk may be full'}; "
                "free some space or choose another folder"
            )


def remove_output_file(destination: str) -> None:
    """Remove a file output and its SQLite side files, so that a failed run leaves nothing behind."""
    path = Path(destination.split("|")[0])
    if not destination or "://" in destination or destination.startswith(("memory:", "TEMPORARY_OUTPUT")):
        return
    for leftover in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal"),
                     path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
