"""A small live chart of training: loss and validation precision, recall and F1 per epoch."""

from __future__ import annotations

from qgis.PyQt.QtCore import QPointF, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

from ..core.training import EpochReport

SERIES = (
    ("loss", "#1f77b4", "loss (÷ first epoch)"),
    ("precision", "#ff7f0e", "precision"),
    ("recall", "#9467bd", "recall"),
    ("f1", "#2ca02c", "F1"),
)


class TrainingPlot(QWidget):
    """Draws one line per series over epochs; every value is on a 0-1 scale."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.reports: list[EpochReport] = []
        self.total_epochs = 1
        self.setMinimumHeight(180)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def reset(self, total_epochs: int) -> None:
        self.reports = []
        self.total_epochs = max(1, total_epochs)
        self.update()

    def add(self, report: EpochReport) -> None:
        self.reports.append(report)
        self.update()

    def _values(self, key: str) -> list[float | None]:
        if key == "loss":
            first = self.reports[0].train_loss if self.reports else 1.0
            return [r.train_loss / first if first else None for r in self.reports]
        return [getattr(r, key) for r in self.reports]

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), QColor("white"))
        left, top, right, bottom = 36, 10, self.width() - 10, self.height() - 60
        painter.setPen(QPen(QColor("#888888"), 1))
        painter.drawRect(left, top, right - left, bottom - top)
        for tick in (0.0, 0.5, 1.0):
            y = bottom - tick * (bottom - top)
            painter.drawText(4, int(y) + 4, f"{tick:.1f}")
        painter.drawText(left, bottom + 14, "epoch 1")
        painter.drawText(right - 60, bottom + 14, f"epoch {self.total_epochs}")

        def point(epoch_index: int, value: float) -> QPointF:
            x = left + (right - left) * (epoch_index / max(1, self.total_epochs - 1))
            return QPointF(x, bottom - min(1.0, max(0.0, value)) * (bottom - top))

        for row, (key, colour, title) in enumerate(SERIES):
            pen = QPen(QColor(colour), 2)
            painter.setPen(pen)
            values = self._values(key)
            points = [point(i, v) for i, v in enumerate(values) if v is not None]
            for a, b in zip(points, points[1:]):
                painter.drawLine(a, b)
            for p in points:
                painter.drawEllipse(p, 2.5, 2.5)
            y = bottom + 28 + (row // 2) * 14
            x = left + (row % 2) * (right - left) // 2
            painter.drawLine(x, y - 4, x + 14, y - 4)
            painter.setPen(QPen(QColor("#333333")))
            painter.drawText(x + 18, y, title)
        if not self.reports:
            painter.setPen(QPen(QColor("#888888")))
            painter.drawText(self.rect().adjusted(0, 0, 0, -50), Qt.AlignCenter, "Figures appear after each epoch")
        painter.end()
