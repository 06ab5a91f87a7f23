"""The Review tab: turn a detection layer into training annotations by correcting it on the map."""

from __future__ import annotations

import time
from collections import Counter

from qgis.core import Qgis, QgsMapLayerProxyModel, QgsProject, QgsRasterLayer, QgsRectangle, QgsSettings, QgsVectorLayer
from qgis.gui import QgsMapLayerComboBox, QgsMapTool
from qgis.PyQt.QtCore import QEvent, Qt, QTimer
from qgis.PyQt.QtGui import QKeySequence
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QShortcut,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import TreecrownsError
from ..gis import review
from ..gis.import_export import export_layer_as_training_set
from ..gis.resources import REVIEWED_AREAS_STYLE
from .data_dialogs import EvaluationDialog, ImportDialog
from .map_tools import RectangleTool

CONFIRM_SHORTCUT = "C"
NEXT_SHORTCUT = "N"
# QGIS keeps unsaved edits in memory only: a crash loses them. The review layer is saved this often.
AUTOSAVE_SETTING = "treecrowns/autosave_minutes"
DEFAULT_AUTOSAVE_MINUTES = 5


class ReviewPanel(QWidget):
    """Add, delete, confirm and reshape crowns; hide low scores; mark areas as reviewed."""

    def __init__(self, iface, parent=None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.keeper: review.StatusKeeper | None = None
        self.areas: QgsVectorLayer | None = None

        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.label_combo = QComboBox()
        self.label_combo.setEditable(True)
        self.label_combo.setToolTip("Label of the crowns you draw; type a new one to add a class")
        self.score_slider = QSlider(Qt.Horizontal)
        self.score_slider.setRange(0, 100)
        self.score_label = QLabel("0.00")

        self.draw_button = QPushButton("Draw crown")
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Drag a box on the map to add a crown with the chosen label")
        self.delete_button = QPushButton("Delete selected")
        self.delete_button.setToolTip("Remove the selected crowns (or press Delete on the map)")
        self.confirm_button = QPushButton(f"Confirm selected ({CONFIRM_SHORTCUT})")
        self.next_button = QPushButton(f"Next unreviewed ({NEXT_SHORTCUT})")
        self.next_button.setToolTip("Zoom to the next predicted crown, least confident first, and select it")
        self.area_button = QPushButton("Draw reviewed area")
        self.area_button.setCheckable(True)
        self.view_button = QPushButton("Mark view reviewed")
        self.view_button.setToolTip("Every crown in the current map view is now correct")
        self.save_button = QPushButton("Save edits")
        self.autosave_check = QCheckBox("Save every")
        self.autosave_check.setToolTip(
            "QGIS keeps edits in memory until they are saved, and a crash loses them. Saving also clears undo."
        )
        self.autosave_minutes = QSpinBox()
        self.autosave_minutes.setRange(1, 120)
        self.autosave_minutes.setSuffix(" min")
        minutes = QgsSettings().value(AUTOSAVE_SETTING, DEFAULT_AUTOSAVE_MINUTES, type=int)
        self.autosave_check.setChecked(minutes > 0)
        self.autosave_minutes.setValue(minutes if minutes > 0 else DEFAULT_AUTOSAVE_MINUTES)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.import_button = QPushButton("Import annotations…")
        self.export_button = QPushButton("Export training set…")
        self.export_button.setToolTip("Image chips with DeepForest CSV and COCO JSON, for other tools")
        self.evaluate_button = QPushButton("Evaluate…")
        self.evaluate_button.setToolTip("Precision, recall and F1 against reference crowns, at IoU 0.4")
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Crown layer", self.layer_combo)
        form.addRow("Label", self.label_combo)
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.score_slider, 1)
        slider_row.addWidget(self.score_label)
        form.addRow("Hide scores under", slider_row)
        grid = QGridLayout()
        for i, button in enumerate(
            (self.draw_button, self.delete_button, self.confirm_button, self.next_button, self.area_button, self.view_button)
        ):
            grid.addWidget(button, i // 2, i % 2)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(grid)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_button, 1)
        save_row.addWidget(self.autosave_check)
        save_row.addWidget(self.autosave_minutes)
        layout.addLayout(save_row)
        data_row = QHBoxLayout()
        for button in (self.import_button, self.export_button, self.evaluate_button):
            data_row.addWidget(button)
        layout.addLayout(data_row)
        layout.addWidget(self.summary)
        layout.addStretch(1)

        self.crown_tool = RectangleTool(self.canvas, self.add_crown)
        self.crown_tool.setButton(self.draw_button)
        self.area_tool = RectangleTool(self.canvas, self.mark_area, colour="#ffd500")
        self.area_tool.setButton(self.area_button)
        self.draw_button.toggled.connect(lambda on: self._use_tool(self.crown_tool, on))
        self.area_button.toggled.connect(lambda on: self._use_tool(self.area_tool, on))
        self.delete_button.clicked.connect(self.delete_selected)
        self.confirm_button.clicked.connect(self.confirm_selected)
        self.next_button.clicked.connect(self.next_unreviewed)
        self.view_button.clicked.connect(lambda: self.mark_area(self.canvas.extent()))
        self.save_button.clicked.connect(self.save)
        self.autosave_check.toggled.connect(self._autosave_changed)
        self.autosave_minutes.valueChanged.connect(self._autosave_changed)
        self._autosave_changed()
        self.import_button.clicked.connect(self.open_import)
        self.export_button.clicked.connect(self.export_training_set)
        self.evaluate_button.clicked.connect(self.open_evaluation)
        self.dialogs: dict[str, QWidget] = {}
        self.score_slider.valueChanged.connect(self._score_changed)
        self.layer_combo.layerChanged.connect(self.set_layer)
        self.shortcuts = [
            QShortcut(QKeySequence(CONFIRM_SHORTCUT), self.canvas, self.confirm_selected),
            QShortcut(QKeySequence(NEXT_SHORTCUT), self.canvas, self.next_unreviewed),
        ]
        self.canvas.installEventFilter(self)
        self.set_layer(self.layer_combo.currentLayer())

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt API
        """Delete (or Backspace) on the map removes the selected crowns of the layer under review.

        QGIS's editing tools (the vertex tool deletes vertices with the same key) keep the key.
        """
        if watched is self.canvas and event.type() == QEvent.KeyPress and event.key() in (Qt.Key_Delete, Qt.Key_Backspace):
            tool = self.canvas.mapTool()
            editing_tool = tool is not None and bool(tool.flags() & QgsMapTool.EditTool)
            layer = self.layer()
            if not editing_tool and layer is not None and self.iface.activeLayer() is layer and layer.selectedFeatureCount():
                self.delete_selected()
                return True
        return super().eventFilter(watched, event)

    def shutdown(self) -> None:
        """Undo what the panel did to QGIS: map tools, the key filter, status tracking, the autosave timer."""
        self.autosave_timer.stop()
        self.canvas.removeEventFilter(self)
        for tool in (self.crown_tool, self.area_tool):
            if self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
        for shortcut in self.shortcuts:
            shortcut.setEnabled(False)
            shortcut.deleteLater()
        if self.keeper is not None:
            self.keeper.disconnect()
            self.keeper = None

    # Layer --------------------------------------------------------------------------------
    def layer(self) -> QgsVectorLayer | None:
        return self.layer_combo.currentLayer()

    def set_layer(self, layer) -> None:
        """Start reviewing ``layer``: editing on, status kept, its reviewed areas loaded."""
        if self.keeper is not None:
            self.keeper.disconnect()
            self.keeper = None
        self.areas = None
        if layer is None or layer.fields().indexOf("status") < 0:
            self.summary.setText("Choose a crown layer made by Detect (it needs 'score', 'label' and 'status' fields).")
            self._set_enabled(False)
            return
        self.keeper = review.StatusKeeper(layer)
        labels = sorted({str(v) for v in layer.uniqueValues(layer.fields().indexOf("label")) if v})
        for label in labels:
            if self.label_combo.findText(label) < 0:
                self.label_combo.addItem(label)
        self._set_enabled(True)
        self._update_summary()

    def add_labels(self, labels: tuple[str, ...]) -> None:
        """Offer the model's labels for new crowns."""
        for label in labels:
            if self.label_combo.findText(label) < 0:
                self.label_combo.addItem(label)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.draw_button, self.delete_button, self.confirm_button, self.next_button, self.area_button,
                       self.view_button, self.save_button, self.score_slider, self.export_button, self.evaluate_button):
            widget.setEnabled(enabled)

    def _start_editing(self, layer: QgsVectorLayer) -> None:
        if not layer.isEditable():
            layer.startEditing()
        self.iface.setActiveLayer(layer)

    def _use_tool(self, tool, on: bool) -> None:
        if on:
            layer = self.layer()
            if layer is not None:
                self._start_editing(layer)
            self.canvas.setMapTool(tool)
        elif self.canvas.mapTool() is tool:
            self.canvas.unsetMapTool(tool)

    # Actions ------------------------------------------------------------------------------
    def add_crown(self, rect: QgsRectangle) -> None:
        layer = self.layer()
        label = self.label_combo.currentText().strip()
        if layer is None:
            return
        if not label:
            self.iface.messageBar().pushMessage("Tree crowns", "Choose or type a label for the new crown", Qgis.Warning, 5)
            return
        self._start_editing(layer)
        review.add_box(layer, rect, label)
        layer.triggerRepaint()
        self._update_summary()

    def delete_selected(self) -> None:
        layer = self.layer()
        if layer is not None and review.delete_selected(layer):
            layer.triggerRepaint()
            self._update_summary()

    def confirm_selected(self) -> None:
        layer = self.layer()
        if layer is not None and review.confirm_selected(layer):
            layer.removeSelection()
            layer.triggerRepaint()
            self._update_summary()

    def next_unreviewed(self) -> None:
        layer = self.layer()
        if layer is None:
            return
        queue = review.unreviewed_in_review_order(layer, self.score_slider.value() / 100.0)
        if not queue:
            self.summary.setText(self.summary.text() + "<br><b>No predicted crown is left to review.</b>")
            return
        fid = queue[0]
        layer.selectByIds([fid])
        box = layer.getFeature(fid).geometry().boundingBox()
        box.grow(max(box.width(), box.height()) * 2)
        self.canvas.setExtent(self.canvas.mapSettings().layerToMapCoordinates(layer, box))
        self.canvas.refresh()

    def mark_area(self, rect: QgsRectangle) -> None:
        layer = self.layer()
        if layer is None:
            return
        rect = self.canvas.mapSettings().mapToLayerCoordinates(layer, rect)
        if self.areas is None:
            self.areas = review.reviewed_areas_layer(layer)
            if not QgsProject.instance().mapLayersByName(self.areas.name()):
                QgsProject.instance().addMapLayer(self.areas)
                self.areas.loadNamedStyle(str(REVIEWED_AREAS_STYLE))
        review.mark_reviewed(self.areas, rect, time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.areas.triggerRepaint()
        self._update_summary()

    def _autosave_changed(self, *_args) -> None:
        on = self.autosave_check.isChecked()
        self.autosave_minutes.setEnabled(on)
        QgsSettings().setValue(AUTOSAVE_SETTING, self.autosave_minutes.value() if on else 0)
        if on:
            self.autosave_timer.start(self.autosave_minutes.value() * 60_000)
        else:
            self.autosave_timer.stop()

    def autosave(self) -> None:
        """Save the crown layer and its reviewed areas when they hold unsaved edits (they stay in edit mode)."""
        if any(layer is not None and layer.isEditable() and layer.isModified() for layer in (self.layer(), self.areas)):
            self.save()

    def save(self) -> None:
        for layer in (self.layer(), self.areas):
            if layer is not None and layer.isEditable() and not layer.commitChanges(False):
                self.iface.messageBar().pushMessage(
                    "Tree crowns", f"Could not save {layer.name()}: {'; '.join(layer.commitErrors())}", Qgis.Critical, 0
                )
                return
        self._update_summary()

    def open_import(self) -> None:
        dialog = ImportDialog(self)
        self.dialogs["import"] = dialog
        if dialog.exec_() and dialog.imported_layer is not None:
            self.layer_combo.setLayer(dialog.imported_layer)

    def open_evaluation(self) -> None:
        dialog = EvaluationDialog(self, self.layer())
        self.dialogs["evaluate"] = dialog
        dialog.show()

    def export_training_set(self, folder: str | None = None) -> None:
        layer = self.layer()
        if layer is None:
            return
        if not folder:
            folder = QFileDialog.getExistingDirectory(self, "Export the reviewed crowns as a training set")
        if not folder:
            return
        rasters = [lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsRasterLayer)]
        reviewed_only = review.existing_reviewed_areas(layer) is not None
        try:
            summary = export_layer_as_training_set(layer, rasters, folder, reviewed_only)
        except TreecrownsError as exc:
            self.iface.messageBar().pushMessage("Tree crowns", str(exc), Qgis.Warning, 10)
            return
        self.iface.messageBar().pushMessage(
            "Tree crowns", f"Exported {summary.crowns} crowns in {summary.chips} chips to {summary.folder}", Qgis.Success, 10
        )
        self.last_export = summary

    def _score_changed(self, value: int) -> None:
        self.score_label.setText(f"{value / 100:.2f}")
        layer = self.layer()
        if layer is not None:
            review.show_scores_from(layer, value / 100.0)

    def _update_summary(self) -> None:
        layer = self.layer()
        if layer is None:
            return
        counts = Counter(f["status"] for f in layer.getFeatures())
        areas = self.areas.featureCount() if self.areas is not None else 0
        self.summary.setText(
            f"{sum(counts.values())} crowns: {counts.get(review.STATUS_PREDICTED, 0)} predicted, "
            f"{counts.get(review.STATUS_CONFIRMED, 0)} confirmed, {counts.get(review.STATUS_ADDED, 0)} added, "
            f"{counts.get(review.STATUS_EDITED, 0)} edited; {areas} reviewed area(s)"
        )

