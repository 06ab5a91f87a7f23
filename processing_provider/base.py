"""What every treecrowns Processing algorithm shares."""

from __future__ import annotations

from qgis.core import QgsProcessing, QgsProcessingAlgorithm, QgsProcessingParameterVectorLayer


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
