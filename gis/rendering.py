"""Rendering layers to a PNG through QGIS's own map renderer."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsMapLayer, QgsMapRendererParallelJob, QgsMapSettings
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor


def render_png(layers: list[QgsMapLayer], path: str | Path, width: int = 1000) -> Path:
    """Draw ``layers`` (first on top) over the extent of the last one, in its CRS."""
    base = layers[-1]
    extent = base.extent()
    height = max(1, round(width * extent.height() / extent.width()))
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(base.crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    if not image.save(str(path), "PNG"):
        raise OSError(f"could not write the map image {path}")
    return Path(path)
