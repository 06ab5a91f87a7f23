"""Applying our QML styles to algorithm outputs that Processing loads into the project."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingContext, QgsProcessingLayerPostProcessorInterface


class _ApplyStyle(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, style: Path) -> None:
        super().__init__()
        self.style = style

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        layer.loadNamedStyle(str(self.style))
        layer.triggerRepaint()


# Processing keeps only a C++ pointer to a post-processor: the Python objects must stay referenced.
_KEEP_ALIVE: list[_ApplyStyle] = []


def style_on_load(context: QgsProcessingContext, layer_id: str, style: Path) -> None:
    """Style the output layer ``layer_id`` when Processing adds it to the project."""
    if not context.willLoadLayerOnCompletion(layer_id):
        return
    processor = _ApplyStyle(style)
    _KEEP_ALIVE.append(processor)
    context.layerToLoadOnCompletionDetails(layer_id).setPostProcessor(processor)
