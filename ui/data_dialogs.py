"""Small dialogs around review: evaluate a layer against reference crowns, import existing annotations."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsMapLayerProxyModel, QgsVectorLayer
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QRadioButton,
    QVBoxLayout,
)

from ..core.errors import TreecrownsError
from ..core.evaluation import DEFAULT_IOU_THRESHOLD
from ..gis.import_export import ANNOTATION_FILE_FILTER, import_annotations
from ..gis.layers import add_to_project, open_crowns_layer, unique_path
from ..gis.resources import EVALUATION_STYLE


class EvaluationDialog(QDialog):
    """Precision, recall and F1 of a crown layer against reference crowns, and a layer of the outcomes."""

    def __init__(self, parent=None, predictions: QgsVectorLayer | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Evaluate crowns")
        self.setObjectName("TreecrownsEvaluationDialog")
        self.predictions = QgsMapLayerComboBox()
        self.predictions.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        if predictions is not None:
            self.predictions.setLayer(predictions)
        self.reference = QgsMapLayerComboBox()
        self.reference.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.areas = QgsMapLayerComboBox()
        self.areas.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.areas.setAllowEmptyLayer(True)
        self.areas.setLayer(None)
        self.iou = QDoubleSpinBox()
        self.iou.setRange(0.05, 0.95)
        self.iou.setSingleStep(0.05)
        self.iou.setValue(DEFAULT_IOU_THRESHOLD)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.outcome_layer = None
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.run_button = buttons.addButton("Evaluate", QDialogButtonBox.ActionRole)
        form = QFormLayout()
        form.addRow("Predicted crowns", self.predictions)
        form.addRow("Reference crowns", self.reference)
        form.addRow("Only inside areas", self.areas)
        form.addRow("IoU a match must exceed", self.iou)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.result)
        layout.addWidget(buttons)
        self.run_button.clicked.connect(self.evaluate)
        buttons.rejected.connect(self.close)
        self.resize(560, 260)

    def evaluate(self) -> None:
        import processing
        from qgis.core import QgsProcessingException

        predictions, reference = self.predictions.currentLayer(), self.reference.currentLayer()
        if predictions is None or reference is None or predictions is reference:
            self.result.setText("Choose two different layers: the crowns to score and the reference crowns.")
            return
        parameters = {
            "PREDICTIONS": predictions,
            "GROUND_TRUTH": reference,
            "IOU_THRESHOLD": self.iou.value(),
            "OUTPUT": "memory:",
        }
        if self.areas.currentLayer() is not None:
            parameters["REGIONS"] = self.areas.currentLayer()
        try:
            figures = processing.run("treecrowns:evaluate", parameters)
        except QgsProcessingException as exc:
            self.result.setText(f"<span style='color:#b00'>{exc}</span>")
            return
        layer = figures["OUTPUT"]
        layer.setName(f"{predictions.name()} vs {reference.name()}")
        layer.loadNamedStyle(str(EVALUATION_STYLE))
        add_to_project(layer)
        self.outcome_layer = layer
        self.figures = {k: figures[k] for k in ("PRECISION", "RECALL", "F1")}
        self.result.setText(
            f"<b>Precision {figures['PRECISION']:.3f}, recall {figures['RECALL']:.3f}, F1 {figures['F1']:.3f}</b> "
            f"at IoU {self.iou.value():.2f}.<br>Added layer '{layer.name()}': true positives green, "
            "false positives orange, missed crowns magenta."
        )


class ImportDialog(QDialog):
    """Make a review layer from a DeepForest CSV, Pascal VOC, COCO file or any polygon layer."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import crown annotations")
        self.setObjectName("TreecrownsImportDialog")
        self.from_file = QRadioButton("From a file (DeepForest CSV, Pascal VOC, COCO)")
        self.from_file.setChecked(True)
        self.from_layer = QRadioButton("From a polygon layer (bounding boxes)")
        self.file = QgsFileWidget()
        self.file.setFilter(ANNOTATION_FILE_FILTER)
        self.layer = QgsMapLayerComboBox()
        self.layer.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.raster = QgsMapLayerComboBox()
        self.raster.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.output = QgsFileWidget()
        self.output.setStorageMode(QgsFileWidget.SaveFile)
        self.output.setFilter("GeoPackage (*.gpkg)")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.imported_layer: QgsVectorLayer | None = None
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        form = QFormLayout()
        form.addRow(self.from_file)
        form.addRow("File", self.file)
        form.addRow(self.from_layer)
        form.addRow("Layer", self.layer)
        form.addRow("Orthophoto", self.raster)
        form.addRow("Review layer to write", self.output)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(buttons)
        buttons.accepted.connect(self.run_import)
        buttons.rejected.connect(self.reject)
        self.resize(560, 320)

    def run_import(self) -> None:
        raster = self.raster.currentLayer()
        if raster is None:
            self.message.setText("Choose the orthophoto the annotations belong to.")
            return
        source = self.layer.currentLayer() if self.from_layer.isChecked() else self.file.filePath()
        if not source:
            self.message.setText("Choose the annotations to import.")
            return
        output = Path(self.output.filePath()) if self.output.filePath() else unique_path(
            Path(raster.source()).with_name(f"{Path(raster.source()).stem}_annotations.gpkg")
        )
        try:
            path = import_annotations(source, raster, output)
        except TreecrownsError as exc:
            self.message.setText(f"<span style='color:#b00'>{exc}</span>")
            return
        self.imported_layer = open_crowns_layer(path, f"{raster.name()} annotations")
        add_to_project(self.imported_layer)
        self.accept()
