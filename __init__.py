"""treecrowns: find, correct and retrain tree-crown detections in QGIS."""


def classFactory(iface):  # noqa: N802 - name required by QGIS
    """QGIS entry point; imports the plugin only when QGIS loads it."""
    from .plugin import TreecrownsPlugin

    return TreecrownsPlugin(iface)
