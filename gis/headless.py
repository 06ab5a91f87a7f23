"""Starting QGIS without a window, with Processing and the treecrowns provider: for scripts and tests."""

from __future__ import annotations

import sys

from qgis.core import QgsApplication

_APP: QgsApplication | None = None
_PROVIDER = None  # kept referenced: Processing drops a provider whose Python object is collected


def start_qgis() -> QgsApplication:
    """Initialise QGIS once per process (offscreen), with Processing and our algorithms registered."""
    global _APP, _PROVIDER
    if _APP is not None:
        return _APP
    QgsApplication.setPrefixPath("/usr", True)
    _APP = QgsApplication([], False)
    _APP.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    from ..processing_provider.provider import TreecrownsProvider

    if QgsApplication.processingRegistry().providerById("treecrowns") is None:
        _PROVIDER = TreecrownsProvider()
        QgsApplication.processingRegistry().addProvider(_PROVIDER)
    return _APP
