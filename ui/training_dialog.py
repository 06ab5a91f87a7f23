"""The Train dialog: retrain the detector on a reviewed crown layer, watch it learn, use the result."""

from __future__ import annotations

import time
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMapLayerProxyModel, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..core.checkpoint import read_metadata
from ..core.errors import TreecrownsError
from ..core.retraining import checked_groups
from ..core.training import trainable_crowns
from ..core.training_settings import DEFAULT_RETRAINING_LEARNING_RATE, TrainingSettings, learning_rate_for, whole_network
from ..gis import review
from ..gis.training_data import annotations_for_rasters
from ..gis.training_task import TrainingOutcome, TrainingTask
from .training_plot import TrainingPlot


def default_model_name(crowns: QgsVectorLayer) -> str:
    stem = "".join(c if c.isalnum() else "-" for c in crowns.name()).strip("-") or "crowns"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M')}"


class TrainingDialog(QDialog):
    """Widgets in, one :class:`TrainingTask` out; figures come back every epoch."""

    def __init__(self, iface, dock, crowns: QgsVectorLayer | None = None, parent=None) -> None:
        super().__init__(parent or iface.mainWindow())
        self.setWindowTitle("Train tree-crown model")
        self.setObjectName("TreecrownsTrainingDialog")
        self.iface = iface
        self.dock = dock
        self.task: TrainingTask | None = None
        self.new_model: str | None = None

        self.crowns_combo = QgsMapLayerComboBox()
        self.crowns_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        if crowns is not None:
            self.crowns_combo.setLayer(crowns)
        self.rasters = QListWidget()
        self.rasters.setMaximumHeight(90)
        self.reviewed_only = QCheckBox("Only crowns inside reviewed areas")
        self.new_labels = QCheckBox("Add new labels found in the layer as new classes")
        self.new_labels.setChecked(True)
        self.base_combo = QComboBox()
        for i in range(dock.model_combo.count()):
            self.base_combo.addItem(dock.model_combo.itemText(i), dock.model_combo.itemData(i))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(TrainingSettings.epochs)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(4)
        self.learning_rate.setRange(0.0001, 0.1)
        self.learning_rate.setSingleStep(0.001)
        self.learning_rate.setValue(DEFAULT_RETRAINING_LEARNING_RATE)
        self.learning_rate.setToolTip(
            "Set to the rate the base model states for retraining: a model trained longer needs a larger "
            "rate to learn the same corrections."
        )
        self.whole_network = QCheckBox("Retrain the whole network (for thousands of crowns)")
        self.whole_network.setToolTip(
            "By default only the FPN and detection heads learn from the corrections; the trunk keeps "
            "what the base model learnt on many sites. A few hundred crowns are too few to retrain it."
        )
        self.validation_share = QDoubleSpinBox()
        self.validation_share.setRange(0.0, 0.5)
        self.validation_share.setSingleStep(0.05)
        self.validation_share.setValue(TrainingSettings.validation_share)
        self.validation_share.setToolTip(
            "How the new model is compared with the base model. With corrections in two or more places (orthophotos, "
            "or reviewed areas), models each trained without one group of the places are scored on it. With one place, "
            "this share of it (a strip on the right) is held out instead. 0: no comparison."
        )
        self.output_name = QLineEdit()
        self.plot = TrainingPlot()
        self.progress = QProgressBar()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.detect_button = QPushButton("Detect with new model")
        self.detect_button.setEnabled(False)
        self.close_button = QPushButton("Close")

        form = QFormLayout()
        form.addRow("Crown layer", self.crowns_combo)
        form.addRow("Orthophotos", self.rasters)
        form.addRow("", self.reviewed_only)
        form.addRow("Base model", self.base_combo)
        form.addRow("", self.new_labels)
        form.addRow("Epochs", self.epochs)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("", self.whole_network)
        form.addRow("Validation share", self.validation_share)
        form.addRow("New model name", self.output_name)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.cancel_button, self.detect_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(560, 720)

        self.base_combo.currentIndexChanged.connect(self._base_changed)
        self.crowns_combo.layerChanged.connect(self._crowns_changed)
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button.clicked.connect(self.cancel_training)
        self.detect_button.clicked.connect(self.detect_with_new_model)
        self.close_button.clicked.connect(self.close)
        self._base_changed()
        self._crowns_changed(self.crowns_combo.currentLayer())

    def _base_changed(self) -> None:
        """The learning rate follows the base model: each checkpoint states the one that suits it."""
        base = self.base_combo.currentData()
        if not base:
            return
        try:
            self.learning_rate.setValue(learning_rate_for(read_metadata(base)))
        except TreecrownsError:
            # A model that cannot be read: Train says why; keep the rate shown.
            pass

    def _crowns_changed(self, crowns) -> None:
        """Defaults from the layer: rasters under it, its reviewed areas, the model that made it."""
        self.rasters.clear()
        if crowns is None:
            return
        for layer in QgsProject.instance().mapLayers().values():
            if isinstance(layer, QgsRasterLayer):
                item = QListWidgetItem(layer.name())
                item.setData(Qt.UserRole, layer.id())
                under = self._extent_in(crowns, layer).intersects(layer.extent())
                item.setCheckState(Qt.Checked if under else Qt.Unchecked)
                self.rasters.addItem(item)
        areas = review.existing_reviewed_areas(crowns)
        self.reviewed_only.setChecked(areas is not None and areas.featureCount() > 0)
        self.reviewed_only.setEnabled(areas is not None)
        producer = next((f["model"] for f in crowns.getFeatures() if f["model"]), None) if crowns.fields().indexOf("model") >= 0 else None
        index = self.base_combo.findData(producer) if producer else -1
        if index < 0 and producer:
            index = next((i for i in range(self.base_combo.count()) if Path(self.base_combo.itemData(i)).name == Path(producer).name), -1)
        if index >= 0:
            self.base_combo.setCurrentIndex(index)
        self.output_name.setText(default_model_name(crowns))

    @staticmethod
    def _extent_in(crowns: QgsVectorLayer, raster: QgsRasterLayer):
        from qgis.core import QgsCoordinateTransform

        extent = crowns.extent()
        if crowns.crs() != raster.crs() and crowns.crs().isValid() and raster.crs().isValid():
            extent = QgsCoordinateTransform(crowns.crs(), raster.crs(), QgsProject.instance()).transformBoundingBox(extent)
        return extent

    def chosen_rasters(self) -> list[QgsRasterLayer]:
        project = QgsProject.instance()
        return [
            project.mapLayer(self.rasters.item(i).data(Qt.UserRole))
            for i in range(self.rasters.count())
            if self.rasters.item(i).checkState() == Qt.Checked
        ]

    def output_path(self, crowns: QgsVectorLayer) -> Path:
        folder = Path(review.gpkg_path_of(crowns)).parent / "models"
        folder.mkdir(parents=True, exist_ok=True)
        name = self.output_name.text().strip() or default_model_name(crowns)
        return folder / (name if name.endswith(".safetensors") else f"{name}.safetensors")

    def start_training(self) -> None:
        crowns = self.crowns_combo.currentLayer()
        rasters = self.chosen_rasters()
        if crowns is None or not rasters:
            self.status.setText("Choose a crown layer and at least one orthophoto.")
            return
        if crowns.isEditable() and crowns.isModified():
            self.status.setText("Save the crown layer's edits first (Review tab: Save edits); training reads the saved crowns.")
            return
        areas = review.existing_reviewed_areas(crowns) if self.reviewed_only.isChecked() else None
        base = self.base_combo.currentData()
        try:
            labels = read_metadata(base).labels
            items, warnings = annotations_for_rasters(
                rasters, crowns, "label", areas, default_label=labels[0] if len(labels) == 1 else None
            )
        except TreecrownsError as exc:
            self.status.setText(f"<span style='color:#b00'>{exc}</span>")
            return
        output = self.output_path(crowns)
        if output.exists():
            self.status.setText(f"{output.name} already exists; choose another name.")
            return
        settings = TrainingSettings(
            epochs=self.epochs.value(),
            learning_rate=self.learning_rate.value(),
            validation_share=self.validation_share.value(),
        )
        if self.whole_network.isChecked():
            settings = whole_network(settings)
        training_data = {
            "layer": crowns.source(),
            "reviewed_areas": areas.source() if areas is not None else None,
            "areas": areas.featureCount() if areas is not None else 0,
            "rasters": [item.image_path for item in items],
            "crowns": trainable_crowns(items),
        }
        self.task = TrainingTask(base, items, output, settings, training_data, self._finished, self.new_labels.isChecked())
        self.task.epochFinished.connect(self._epoch)
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.plot.reset(settings.epochs)
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.detect_button.setEnabled(False)
        groups = checked_groups(items, settings)
        self.status.setText(
            f"Training on {training_data['crowns']} crowns in {len(items)} orthophoto(s)…"
            + (f"<br>First, to compare with the base model, {len(groups)} models each learn all but one group of the "
               "corrected places and are scored on it." if groups else "")
            + "".join(f"<br>{w}" for w in warnings)
        )
        QgsApplication.taskManager().addTask(self.task)

    def _epoch(self, report) -> None:
        self.plot.add(report)
        figures = f"loss {report.train_loss:.3f}"
        if report.f1 is not None:
            figures += f", validation P {report.precision:.2f} R {report.recall:.2f} F1 {report.f1:.2f}"
        self.status.setText(f"Epoch {report.epoch}: {figures}{' (saved)' if report.saved else ''}")

    def cancel_training(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status.setText("Cancelling; the last finished epoch is kept…")

    def _finished(self, outcome: TrainingOutcome) -> None:
        self.task = None
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if outcome.error:
            self.status.setText(f"<span style='color:#b00'>Training failed: {outcome.error}</span>")
            return
        if outcome.result is None:
            self.status.setText("Cancelled before the first epoch finished; no model was written.")
            return
        result = outcome.result
        path = result.checkpoint_path
        self.new_model = path
        metrics = result.metrics
        summary = f"New model {Path(path).name}"
        if metrics and not result.cross_checked:  # a check's figures are the comparison's, below
            summary += f": validation P {metrics['precision']:.2f}, R {metrics['recall']:.2f}, F1 {metrics['f1']:.2f} (epoch {metrics['epoch']})"
        if outcome.cancelled:
            summary += " — cancelled, the last finished epoch kept"
        comparison = result.comparison_with_base()
        if result.worse_than_base:
            # Listed for a later choice, but the dock keeps the model it started from selected.
            self.dock.add_model(path, select=False)
            summary += f"<br><b>Not better.</b> {comparison}. The dock keeps the base model selected."
        else:
            self.dock.add_model(path)
            summary += f"<br>{comparison}." if comparison else ""
        self.status.setText(summary + "".join(f"<br>Note: {note}" for note in result.notes))
        self.progress.setValue(100)
        self.detect_button.setEnabled(True)
        level = Qgis.Warning if result.worse_than_base else Qgis.Success
        self.iface.messageBar().pushMessage("Tree crowns", summary.replace("<br>", " ").replace("<b>", "").replace("</b>", ""),
                                            level, 10)

    def detect_with_new_model(self) -> None:
        if self.new_model:
            self.dock.add_model(self.new_model)
            self.dock.start_detection()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.task is not None:
            self.task.cancel()
        super().closeEvent(event)
