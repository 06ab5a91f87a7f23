"""The Tree crowns dock: pick a raster and a model, detect, watch progress, cancel."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMapLayerProxyModel, QgsProject, QgsSettings
from qgis.gui import QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox, QgsRasterBandComboBox
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.checkpoint import ModelMetadata, read_metadata
from ..core.errors import TreecrownsError
from ..core.prediction import Device, DetectionSettings
from ..core.raster import RasterReader
from ..gis.detection_task import DetectionOutcome, DetectionTask
from ..gis.layers import add_to_project, open_crowns_layer, unique_path
from ..gis.output_checks import output_problem
from ..gis.resources import BUNDLED_MODEL
from .review_panel import ReviewPanel

_RECENT_MODELS_KEY = "treecrowns/recent_models"


def default_output_path(raster_path: str) -> Path:
    """``<raster>_crowns.gpkg`` beside the raster, or in ~/treecrowns if that folder is read-only."""
    raster = Path(raster_path)
    folder = raster.parent if os.access(raster.parent, os.W_OK) else Path.home() / "treecrowns"
    folder.mkdir(parents=True, exist_ok=True)
    return unique_path(folder / f"{raster.stem}_crowns.gpkg")


class DetectionDock(QgsDockWidget):
    """Widgets in, one :class:`DetectionSettings` out; the task does the work."""

    def __init__(self, iface, parent=None) -> None:
        super().__init__("Tree crowns", parent)
        self.setObjectName("TreecrownsDock")
        self.iface = iface
        self.task: DetectionTask | None = None
        self.last_outcome: DetectionOutcome | None = None
        self.model_metadata: ModelMetadata | None = None

        body = QWidget()
        form = QFormLayout()
        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow("Orthophoto", self.raster_combo)
        # Which bands hold red, green and blue: 4-band orthophotos (RGB + near infrared) are common.
        self.band_combos = [QgsRasterBandComboBox() for _ in range(3)]
        bands_row = QHBoxLayout()
        for combo, colour in zip(self.band_combos, ("red", "green", "blue")):
            combo.setToolTip(f"The band that holds {colour}; set from the raster's colour tags when it is chosen")
            bands_row.addWidget(combo)
        form.addRow("Bands (R, G, B)", bands_row)

        self.model_combo = QComboBox()
        self.browse_button = QToolButton()
        self.browse_button.setText("…")
        self.browse_button.setToolTip("Choose a model checkpoint file (treecrowns or DeepForest)")
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.browse_button)
        form.addRow("Model", model_row)
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        form.addRow("", self.model_info)

        self.score_spin = QDoubleSpinBox()
        self.score_spin.setRange(0.01, 1.0)
        self.score_spin.setSingleStep(0.05)
        self.score_spin.setToolTip("Crowns scored below this are not reported")
        form.addRow("Score threshold", self.score_spin)

        self.views_check = QCheckBox("Four turned views per patch")
        self.views_check.setToolTip(
            "Look at every patch turned by 0, 90, 180 and 270 degrees (at each resolution the model "
            "names) and fuse what is found: several times slower, usually more accurate. Set from the "
            "model; the score threshold follows, since the two ways are calibrated separately."
        )
        form.addRow("", self.views_check)

        self.device_combo = QComboBox()
        for device in Device:
            self.device_combo.addItem(device.value, device)
        form.addRow("Device", self.device_combo)

        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoPackage (*.gpkg)")
        self.output_widget.lineEdit().setPlaceholderText("beside the orthophoto")
        form.addRow("Output", self.output_widget)

        self.detect_button = QPushButton("Detect")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.detect_button)
        buttons.addWidget(self.cancel_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel()
        self.status.setWordWrap(True)

        layout = QVBoxLayout(body)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.review = ReviewPanel(iface)
        self.train_button = QPushButton("Train model…")
        self.train_button.setToolTip("Retrain the detector on the reviewed crowns")
        self.review.layout().insertWidget(self.review.layout().count() - 1, self.train_button)
        self.tabs = QTabWidget()
        self.tabs.addTab(body, "Detect")
        self.tabs.addTab(self.review, "Review")
        self.setWidget(self.tabs)
        self.training_dialog = None
        self.train_button.clicked.connect(self.open_training)

        self.raster_combo.layerChanged.connect(self._raster_changed)
        self._raster_changed(self.raster_combo.currentLayer())
        self._fill_models()
        self.model_combo.currentIndexChanged.connect(self._show_model)
        self.views_check.toggled.connect(self._views_toggled)
        self.browse_button.clicked.connect(self._browse_model)
        self.detect_button.clicked.connect(self.start_detection)
        self.cancel_button.clicked.connect(self.cancel_detection)
        self._show_model()

    # Models -------------------------------------------------------------------------------
    def _fill_models(self) -> None:
        self.model_combo.clear()
        self.model_combo.addItem(f"Bundled: {BUNDLED_MODEL.stem}", str(BUNDLED_MODEL))
        for path in QgsSettings().value(_RECENT_MODELS_KEY, [], type=list):
            if Path(path).exists() and path != str(BUNDLED_MODEL):
                self.model_combo.addItem(Path(path).name, path)

    def add_model(self, path: str, select: bool = True) -> None:
        """Put a checkpoint in the list (remembered across sessions) and, unless told not to, select it."""
        recent = [p for p in QgsSettings().value(_RECENT_MODELS_KEY, [], type=list) if p != path]
        QgsSettings().setValue(_RECENT_MODELS_KEY, [path, *recent][:10])
        index = self.model_combo.findData(path)
        if index < 0:
            self.model_combo.addItem(Path(path).name, path)
            index = self.model_combo.count() - 1
        if select:
            self.model_combo.setCurrentIndex(index)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a model checkpoint", "", "Checkpoints (*.safetensors *.pt *.pth *.ckpt);;All files (*)"
        )
        if path:
            self.add_model(path)

    def selected_model(self) -> str:
        return self.model_combo.currentData()

    def _show_model(self) -> None:
        try:
            meta: ModelMetadata = read_metadata(self.selected_model())
        except TreecrownsError as exc:
            self.model_info.setText(f"<span style='color:#b00'>{exc}</span>")
            self.detect_button.setEnabled(False)
            return
        f1 = meta.calibration_for(meta.test_time_augmentation).get("f1", meta.metrics.get("validation", {}).get("f1"))
        quality = f", validation F1 {f1:.2f}" if f1 is not None else ""
        self.model_info.setText(
            f"Labels: {', '.join(meta.labels)}<br>{meta.ground_resolution_m:g} m per pixel, "
            f"{meta.patch_size} px patches{quality}"
        )
        self.model_metadata = meta
        self.views_check.blockSignals(True)
        self.views_check.setText(f"{meta.views_description().capitalize()} per patch")
        self.views_check.setChecked(meta.test_time_augmentation)
        self.views_check.blockSignals(False)
        self.score_spin.setValue(meta.score_threshold)
        self.review.add_labels(meta.labels)
        self.detect_button.setEnabled(self.task is None)

    def _raster_changed(self, layer) -> None:
        """Point the band choosers at the new raster, with the bands detection would pick by itself."""
        bands: tuple[int, ...] = (1, 2, 3)
        if layer is not None:
            try:
                with RasterReader(layer.source()) as reader:
                    bands = reader.info.bands
            except TreecrownsError:
                pass  # not a file GDAL can read as RGB: Detect reports why
        for combo, band in zip(self.band_combos, bands):
            combo.setLayer(layer)
            combo.setBand(band)

    def chosen_bands(self) -> tuple[int, int, int] | None:
        bands = tuple(combo.currentBand() for combo in self.band_combos)
        return bands if all(band >= 1 for band in bands) else None  # type: ignore[return-value]

    def _views_toggled(self, checked: bool) -> None:
        if self.model_metadata is not None:
            self.score_spin.setValue(self.model_metadata.score_threshold_for(checked))

    def shutdown(self) -> None:
        """Called by the plugin's unload(): stop training and release the map tools and shortcuts."""
        if self.training_dialog is not None:
            self.training_dialog.close()
        self.review.shutdown()

    def open_training(self) -> None:
        from .training_dialog import TrainingDialog

        if self.training_dialog is not None and self.training_dialog.task is not None:
            self.training_dialog.raise_()
            return
        self.training_dialog = TrainingDialog(self.iface, self, self.review.layer())
        self.training_dialog.show()

    # Detection ----------------------------------------------------------------------------
    def settings(self) -> DetectionSettings:
        return DetectionSettings(
            score_threshold=self.score_spin.value(),
            device=self.device_combo.currentData(),
            test_time_augmentation=self.views_check.isChecked(),
            bands=self.chosen_bands(),
        )

    def start_detection(self) -> None:
        raster = self.raster_combo.currentLayer()
        if raster is None:
            self.iface.messageBar().pushMessage("Tree crowns", "Choose an orthophoto layer first", Qgis.Warning, 5)
            return
        chosen = self.output_widget.filePath()
        try:
            output = Path(chosen) if chosen else default_output_path(raster.source())
        except OSError as exc:
            self.iface.messageBar().pushMessage("Tree crowns", f"No writable output folder: {exc}", Qgis.Critical, 10)
            return
        if output.suffix.lower() != ".gpkg":
            output = output.with_suffix(".gpkg")
        problem = output_problem(str(output), QgsProject.instance())
        if problem:
            self.status.setText(f"Not started: {problem}.")
            self.iface.messageBar().pushMessage("Tree crowns", problem, Qgis.Warning, 10)
            return
        if output.exists() and not self._confirm_replace(output):
            return
        self.task = DetectionTask(raster.source(), self.selected_model(), output, self.settings(), self._finished)
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self._layer_name = f"{raster.name()} crowns"
        self.detect_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"Detecting crowns in {raster.name()}…")
        QgsApplication.taskManager().addTask(self.task)

    def _confirm_replace(self, output: Path) -> bool:
        answer = QMessageBox.question(
            self, "Tree crowns", f"{output} already exists. Replace it with the new crowns?",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.No,
        )
        return answer == QMessageBox.Yes

    def cancel_detection(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status.setText("Cancelling…")

    def _finished(self, outcome: DetectionOutcome) -> None:
        self.task = None
        self.last_outcome = outcome
        self.detect_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        bar = self.iface.messageBar()
        if outcome.cancelled:
            self.progress.setValue(0)
            self.status.setText("Cancelled; no layer was written.")
            return
        if outcome.error:
            self.status.setText(f"Failed: {outcome.error}")
            bar.pushMessage("Tree crowns", outcome.error, Qgis.Critical, 0)
            return
        layer = open_crowns_layer(outcome.output_path, self._layer_name)
        add_to_project(layer)
        self.review.layer_combo.setLayer(layer)
        self.progress.setValue(100)
        self.status.setText(f"{outcome.crown_count} crowns written to {outcome.output_path}")
        for warning in outcome.warnings:
            bar.pushMessage("Tree crowns", warning, Qgis.Warning, 10)
        bar.pushMessage("Tree crowns", f"{outcome.crown_count} crowns found", Qgis.Success, 5)
