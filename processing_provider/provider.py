"""Registers the treecrowns algorithms with QGIS Processing."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..gis.resources import ICON
from .missing_packages import stand_ins


class TreecrownsProvider(QgsProcessingProvider):
    """The algorithms, or while PyTorch is missing (``missing_message`` set) stand-ins that say how to get it.

    ``refreshAlgorithms()`` after setting ``missing_message`` to None swaps in the real algorithms.
    """

    def __init__(self, missing_message: str | None = None) -> None:
        super().__init__()
        self.missing_message = missing_message

    def id(self) -> str:
        return "treecrowns"

    def name(self) -> str:
        return "Tree crowns"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        if self.missing_message is not None:
            for algorithm in stand_ins(self.missing_message):
                self.addAlgorithm(algorithm)
            return
        # Imported here: every algorithm imports the engine, which needs torch.
        from .annotation_algorithms import ExportTrainingSetAlgorithm, ImportAnnotationsAlgorithm
        from .detect_algorithm import DetectAlgorithm
        from .evaluate_algorithm import EvaluateAlgorithm
        from .train_algorithm import TrainAlgorithm

        for algorithm in (
            DetectAlgorithm(), TrainAlgorithm(), EvaluateAlgorithm(), ImportAnnotationsAlgorithm(), ExportTrainingSetAlgorithm()
        ):
            self.addAlgorithm(algorithm)
