"""Registers the treecrowns algorithms with QGIS Processing."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..gis.resources import ICON
from .annotation_algorithms import ExportTrainingSetAlgorithm, ImportAnnotationsAlgorithm
from .detect_algorithm import DetectAlgorithm
from .evaluate_algorithm import EvaluateAlgorithm
from .train_algorithm import TrainAlgorithm


class TreecrownsProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "treecrowns"

    def name(self) -> str:
        return "Tree crowns"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def loadAlgorithms(self) -> None:
        for algorithm in (
            DetectAlgorithm(), TrainAlgorithm(), EvaluateAlgorithm(), ImportAnnotationsAlgorithm(), ExportTrainingSetAlgorithm()
        ):
            self.addAlgorithm(algorithm)
