"""Stand-ins for the algorithms while QGIS's Python lacks PyTorch: each says what to install.

Every treecrowns algorithm imports the engine, which needs torch. Without it the provider still
lists each algorithm under its own id, so that ``qgis_process run treecrowns:detect``, a batch job
or the model designer gets the one message that names what is missing and how to install it,
instead of "algorithm not found".
"""

from __future__ import annotations

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException

# id -> title of every algorithm; a test keeps them equal to the real algorithms'.
ENGINE_ALGORITHMS = {
    "detect": "Detect tree crowns",
    "train": "Train tree-crown model",
    "evaluate": "Evaluate crown detections",
    "import_annotations": "Import crown annotations",
    "export_training_set": "Export crowns as a training set",
}


class MissingPackagesAlgorithm(QgsProcessingAlgorithm):
    """Takes no parameters and refuses to run, with ``message`` as its reason and its help."""

    def __init__(self, name: str, title: str, message: str) -> None:
        super().__init__()
        self._name, self._title, self.message = name, title, message

    def name(self) -> str:
        return self._name

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return f"{self._title} (needs PyTorch)"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.message

    def createInstance(self) -> "MissingPackagesAlgorithm":  # noqa: N802 - QGIS API
        return MissingPackagesAlgorithm(self._name, self._title, self.message)

    def initAlgorithm(self, configuration=None) -> None:  # noqa: N802 - QGIS API
        """No parameters: whatever a command passes, the run stops at the check below with the message."""

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        return False, self.message

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        raise QgsProcessingException(self.message)


def stand_ins(message: str) -> list[MissingPackagesAlgorithm]:
    """One stand-in per algorithm, all giving ``message``."""
    return [MissingPackagesAlgorithm(name, title, message) for name, title in ENGINE_ALGORITHMS.items()]
