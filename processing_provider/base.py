"""What every treecrowns Processing algorithm shares."""

from __future__ import annotations

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterVectorLayer,
)

from ..gis.output_checks import output_problem, remove_output_file


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
    """Refuse, before any work is done, an output that cannot be written or would break an open layer."""
    problem = output_problem(path, context.project() if context is not None else None)
    if problem:
        raise QgsProcessingException(problem)


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
