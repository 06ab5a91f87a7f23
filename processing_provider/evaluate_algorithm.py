"""Processing algorithm ``treecrowns:evaluate``: score predicted crowns against reference crowns."""

from __future__ import annotations

import numpy as np
from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorLayer,
    QgsRectangle,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core.areas import centres_inside
from ..core.errors import TreecrownsError
from ..core.evaluation import DEFAULT_IOU_THRESHOLD, evaluate
from ..gis.layers import layer_areas, layer_boxes
from ..gis.resources import EVALUATION_STYLE
from .base import TreecrownsAlgorithm, areas_parameter, check_output_file
from .styling import style_on_load

OUTCOME_TRUE_POSITIVE = "true positive"
OUTCOME_FALSE_POSITIVE = "false positive"
OUTCOME_MISSED = "missed"


def outcome_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(QgsField("outcome", QVariant.String))
    fields.append(QgsField("iou", QVariant.Double))
    fields.append(QgsField("label", QVariant.String))
    return fields


class EvaluateAlgorithm(TreecrownsAlgorithm):
    PREDICTIONS = "PREDICTIONS"
    GROUND_TRUTH = "GROUND_TRUTH"
    REGIONS = "REGIONS"
    IOU_THRESHOLD = "IOU_THRESHOLD"
    OUTPUT = "OUTPUT"

    NAME = "evaluate"
    TITLE = "Evaluate crown detections"
    HELP = (
        "Scores predicted crowns against reference crowns with DeepForest's protocol: boxes are paired "
        "one-to-one (Hungarian matching on overlap) and a pair counts when its IoU is above the threshold "
        "(0.4 by default). Gives precision, recall and F1, and a layer of true positives, false positives "
        "and missed crowns. With REGIONS, only crowns whose centre lies inside one of the area polygons "
        "are scored."
    )

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterVectorLayer(self.PREDICTIONS, "Predicted crowns", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterVectorLayer(self.GROUND_TRUTH, "Reference crowns", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(areas_parameter(self.REGIONS, "Only inside these areas (e.g. reviewed areas)"))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.IOU_THRESHOLD, "IoU a match must exceed", QgsProcessingParameterNumber.Double, DEFAULT_IOU_THRESHOLD, False, 0.0, 1.0
            )
        )
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Matched and unmatched crowns", QgsProcessing.TypeVectorPolygon))
        for key, title in (("PRECISION", "Precision"), ("RECALL", "Recall"), ("F1", "F1")):
            self.addOutput(QgsProcessingOutputNumber(key, title))

    def processAlgorithm(self, parameters, context, feedback):
        predictions = self.parameterAsVectorLayer(parameters, self.PREDICTIONS, context)
        reference = self.parameterAsVectorLayer(parameters, self.GROUND_TRUTH, context)
        threshold = self.parameterAsDouble(parameters, self.IOU_THRESHOLD, context)
        check_output_file(self.parameterAsOutputLayer(parameters, self.OUTPUT, context), context)
        crs = predictions.crs()
        try:
            predicted_boxes, predicted_labels = layer_boxes(predictions, crs, "label", default_label="")
            reference_boxes, reference_labels = layer_boxes(reference, crs, "label", default_label="")
        except TreecrownsError as exc:
            raise QgsProcessingException(str(exc)) from exc
        regions = self.parameterAsVectorLayer(parameters, self.REGIONS, context)
        if regions is not None:
            try:
                areas = layer_areas(regions, crs)
            except TreecrownsError as exc:
                raise QgsProcessingException(str(exc)) from exc
            keep_p, keep_r = centres_inside(predicted_boxes, areas), centres_inside(reference_boxes, areas)
            predicted_boxes, predicted_labels = predicted_boxes[keep_p], tuple(np.array(predicted_labels, dtype=object)[keep_p])
            reference_boxes, reference_labels = reference_boxes[keep_r], tuple(np.array(reference_labels, dtype=object)[keep_r])
        if len(reference_boxes) == 0:
            raise QgsProcessingException(f"the reference layer '{reference.name()}' has no crowns to score against")
        result = evaluate({"all": predicted_boxes}, {"all": reference_boxes}, threshold)
        matches = result.per_image["all"]
        fields = outcome_fields()
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Polygon, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))

        def add(box, outcome: str, iou: float | None, label: str) -> None:
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(*map(float, box))))
            feature.setAttributes([outcome, iou, label])
            sink.addFeature(feature, QgsFeatureSink.FastInsert)

        for (p, _r), iou in zip(matches.matched_pairs, matches.matched_iou):
            add(predicted_boxes[p], OUTCOME_TRUE_POSITIVE, float(iou), predicted_labels[p])
        for p in matches.false_positives:
            add(predicted_boxes[p], OUTCOME_FALSE_POSITIVE, None, predicted_labels[p])
        for r in matches.missed:
            add(reference_boxes[r], OUTCOME_MISSED, None, reference_labels[r])
        style_on_load(context, dest_id, EVALUATION_STYLE)
        feedback.pushInfo(
            f"precision {result.precision:.3f}, recall {result.recall:.3f}, F1 {result.f1:.3f} "
            f"({result.true_positives} matched, {result.false_positives} false positives, {result.missed} missed)"
        )
        return {self.OUTPUT: dest_id, "PRECISION": result.precision, "RECALL": result.recall, "F1": result.f1}
