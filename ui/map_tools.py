"""Map tools for review: drag a rectangle on the canvas to add a crown or mark an area reviewed."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import QgsGeometry, QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor


class RectangleTool(QgsMapTool):
    """Press, drag, release: calls ``on_rectangle`` with the rectangle in map coordinates.

    Rectangles smaller than a few screen pixels are ignored (a click is not a crown).
    """

    MIN_SCREEN_PIXELS = 4

    def __init__(self, canvas: QgsMapCanvas, on_rectangle: Callable[[QgsRectangle], None], colour: str = "#00e0ff") -> None:
        super().__init__(canvas)
        self.on_rectangle = on_rectangle
        self.band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.band.setColor(QColor(colour))
        self.band.setFillColor(QColor(0, 0, 0, 0))
        self.band.setWidth(2)
        self.start: QgsPointXY | None = None
        self.start_pixel = None
        self.setCursor(Qt.CrossCursor)

    def canvasPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.button() != Qt.LeftButton:
            return
        self.start = self.toMapCoordinates(event.pos())
        self.start_pixel = event.pos()
        self.band.reset(QgsWkbTypes.PolygonGeometry)

    def canvasMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.start is None:
            return
        rect = QgsRectangle(self.start, self.toMapCoordinates(event.pos()))
        self.band.setToGeometry(QgsGeometry.fromRect(rect), None)

    def canvasReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.start is None or event.button() != Qt.LeftButton:
            return
        end = self.toMapCoordinates(event.pos())
        moved = (event.pos() - self.start_pixel).manhattanLength()
        rect = QgsRectangle(self.start, end)
        self.start = None
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        if moved >= self.MIN_SCREEN_PIXELS and rect.width() > 0 and rect.height() > 0:
            self.on_rectangle(rect)

    def deactivate(self) -> None:
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        self.start = None
        super().deactivate()

