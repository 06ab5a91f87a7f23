"""Processing algorithm ``treecrowns:train``: retrain a detector on crowns drawn or corrected in QGIS."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    NULL,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorLayer,
)

from ..core.checkpoint import extend_labels, load_checkpoint, with_provenance
from ..core.errors import Cancelled, TreecrownsError
from ..core.retraining import retrain
from ..core.training import trainable_crowns, uses_bfloat16
from ..core.training_settings import TrainingSettings, whole_network, with_learning_rate_for
from ..gis.feedback import from_processing
from ..gis.resources import model_path_or_bundled
from ..gis.training_data import annotations_for_rasters
from .base import TreecrownsAlgorithm, areas_parameter, check_output_file
from .detect_algorithm import DEVICES


class TrainAlgorithm(TreecrownsAlgorithm):
    RASTERS = "RASTERS"
    ANNOTATIONS = "ANNOTATIONS"
    LABEL_FIELD = "LABEL_FIELD"
    REGIONS = "REGIONS"
    BASE_MODEL = "BASE_MODEL"
    EPOCHS = "EPOCHS"
    LEARNING_RATE = "LEARNING_RATE"
    BATCH_SIZE = "BATCH_SIZE"
    VALIDATION_SHARE = "VALIDATION_SHARE"
    DEVICE = "DEVICE"
    NEW_LABELS = "NEW_LABELS"
    WHOLE_NETWORK = "WHOLE_NETWORK"
    OUTPUT_MODEL = "OUTPUT_MODEL"

    NAME = "train"
    TITLE = "Train tree-crown model"
    HELP = (
        "Retrains a detector on crown boxes drawn or corrected in QGIS. ANNOTATIONS is a layer of crown "
        "boxes (its 'label' field gives the class; without one, the base model's only class is used). "
        "REGIONS, if given, are polygons of fully annotated areas: only crowns inside them are used and "
        "everything else inside them counts as background. The new model learns from every corrected crown and "
        "keeps the base model's score threshold; it is compared with the base model at that threshold on crowns it "
        "did not learn from. With corrections in two or more places (rasters, or separate REGIONS polygons), the places "
        "are cut into up to four groups of neighbours (rasters in order; west to east within a raster), and a model "
        "retrained without each group, at half the epochs, is scored on it beside the base model: about one more "
        "training for two places. With one place, the right-hand "
        "VALIDATION_SHARE strip of it is held out instead. VALIDATION_SHARE 0 skips the comparison. WORSE_THAN_BASE "
        "is 1 when the comparison finds the new model worse. The last epoch is written to OUTPUT_MODEL."
    )

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(self.RASTERS, "Orthophotos", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterVectorLayer(self.ANNOTATIONS, "Crown annotations", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(
            QgsProcessingParameterField(self.LABEL_FIELD, "Label field", "label", self.ANNOTATIONS, optional=True)
        )
        self.addParameter(areas_parameter(self.REGIONS))
        self.addParameter(
            QgsProcessingParameterFile(self.BASE_MODEL, "Base model (empty: bundled model)", optional=True, fileFilter="Checkpoints (*.safetensors *.pt *.pth *.ckpt)")
        )
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, "Epochs", QgsProcessingParameterNumber.Integer, TrainingSettings.epochs, False, 1, 1000))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.LEARNING_RATE, "Learning rate (empty: the rate the base model states for retraining)",
                QgsProcessingParameterNumber.Double, None, True, 1e-6, 1.0,
            )
        )
        self.addParameter(QgsProcessingParameterNumber(self.BATCH_SIZE, "Batch size", QgsProcessingParameterNumber.Integer, TrainingSettings.batch_size, False, 1, 256))
        self.addParameter(
            QgsProcessingParameterNumber(self.VALIDATION_SHARE, "Share held out for validation when the corrections are in one place (0: no comparison with the base model)", QgsProcessingParameterNumber.Double, TrainingSettings.validation_share, False, 0.0, 0.9)
        )
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", [d.value for d in DEVICES], defaultValue=0))
        self.addParameter(
            QgsProcessingParameterBoolean(self.NEW_LABELS, "Add labels the base model does not know as new classes", False)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.WHOLE_NETWORK,
                "Retrain the whole network (thousands of crowns; by default only the FPN and heads learn)",
                False,
            )
        )
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_MODEL, "Trained model", "Checkpoints (*.safetensors)"))
        for key, title in (("PRECISION", "Validation precision"), ("RECALL", "Validation recall"),
                           ("F1", "Validation F1, on crowns not learnt from"),
                           ("BASE_F1", "Validation F1 of the base model, on the same crowns")):
            self.addOutput(QgsProcessingOutputNumber(key, title))
        self.addOutput(QgsProcessingOutputNumber("WORSE_THAN_BASE", "1 if the trained model scores below its base, else 0"))

    def learning_rate(self, parameters, context) -> float | None:
        """The rate asked for, or None when left empty: then the base model's own retraining rate."""
        value = parameters.get(self.LEARNING_RATE)
        if value is None or value == "" or value == NULL:
            return None
        return self.parameterAsDouble(parameters, self.LEARNING_RATE, context)

    def processAlgorithm(self, parameters, context, feedback):
        rasters = self.parameterAsLayerList(parameters, self.RASTERS, context)
        crowns = self.parameterAsVectorLayer(parameters, self.ANNOTATIONS, context)
        regions = self.parameterAsVectorLayer(parameters, self.REGIONS, context)
        label_field = self.parameterAsString(parameters, self.LABEL_FIELD, context) or "label"
        base_path = model_path_or_bundled(self.parameterAsFile(parameters, self.BASE_MODEL, context))
        output = Path(self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context))
        if output.suffix != ".safetensors":
            output = output.with_suffix(".safetensors")
        if not rasters:
            raise QgsProcessingException("choose at least one orthophoto to train on")
        check_output_file(str(output), context)
        try:
            settings = TrainingSettings(
                epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
                learning_rate=self.learning_rate(parameters, context),
                batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
                validation_share=self.parameterAsDouble(parameters, self.VALIDATION_SHARE, context),
                device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            )
        except TreecrownsError as exc:
            raise QgsProcessingException(str(exc)) from exc
        if self.parameterAsBool(parameters, self.WHOLE_NETWORK, context):
            settings = whole_network(settings)
        progress, should_stop = from_processing(feedback)
        try:
            model = load_checkpoint(base_path)
            settings = with_learning_rate_for(settings, model.metadata)
            feedback.pushInfo(f"Learning rate: {settings.learning_rate:g}")
            feedback.pushInfo("Precision: " + ("bfloat16 (this machine has bfloat16 units)"
                                               if uses_bfloat16(settings) else "float32"))
            labels = model.metadata.labels
            items, warnings = annotations_for_rasters(
                rasters, crowns, label_field, regions, default_label=labels[0] if len(labels) == 1 else None
            )
            for warning in warnings:
                feedback.reportError(f"Warning: {warning}", fatalError=False)
            if self.parameterAsBool(parameters, self.NEW_LABELS, context):
                added = extend_labels(model, tuple(label for item in items for label in item.labels))
                if added:
                    feedback.pushInfo(f"New classes added to the model: {list(added)}")
            model.metadata = with_provenance(
                model.metadata,
                parent=str(base_path),
                training_data={
                    "annotations": crowns.source(),
                    "regions": regions.source() if regions is not None else None,
                    "rasters": [item.image_path for item in items],
                    "crowns": trainable_crowns(items),
                },
            )
            result = retrain(
                model, items, output, settings, progress=progress, should_stop=should_stop,
                on_epoch=lambda r: feedback.pushInfo(
                    f"epoch {r.epoch}: loss {r.train_loss:.3f}, validation F1 {r.f1}, precision {r.precision}, recall {r.recall}"
                ),
            )
        except Cancelled as exc:
            raise QgsProcessingException(str(exc)) from exc
        except TreecrownsError as exc:
            raise QgsProcessingException(str(exc)) from exc
        for note in result.notes:
            feedback.pushInfo(f"Note: {note}")
        if result.cancelled:
            feedback.reportError(f"Training was cancelled; the checkpoint of epoch {result.best_epoch} was kept", fatalError=False)
        comparison = result.comparison_with_base()
        if result.worse_than_base:
            feedback.reportError(f"Worse than the base model. {comparison}", fatalError=False)
        elif comparison:
            feedback.pushInfo(comparison)
        metrics = result.metrics
        return {
            self.OUTPUT_MODEL: str(output),
            "PRECISION": metrics.get("precision"),
            "RECALL": metrics.get("recall"),
            "F1": metrics.get("f1"),
            "BASE_F1": result.base_metrics.get("f1"),
            "WORSE_THAN_BASE": int(result.worse_than_base),
        }
