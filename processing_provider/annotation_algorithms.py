"""Processing algorithms ``treecrowns:import_annotations`` and ``treecrowns:export_training_set``."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)

from ..core.errors import TreecrownsError
from ..core.export import export_training_set
from ..gis.import_export import import_annotations
from ..gis.training_data import annotations_for_rasters
from .base import TreecrownsAlgorithm, areas_parameter


class ImportAnnotationsAlgorithm(TreecrownsAlgorithm):
    ANNOTATIONS = "ANNOTATIONS"
    RASTER = "RASTER"
    OUTPUT = "OUTPUT"

    NAME = "import_annotations"
    TITLE = "Import crown annotations"
    HELP = (
        "Makes a crown review layer (GeoPackage, status 'confirmed') from a DeepForest CSV, Pascal VOC XML or "
        "COCO JSON file, whose pixel boxes are placed on RASTER through its georeferencing."
    )

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterFile(self.ANNOTATIONS, "Annotation file", fileFilter="Annotations (*.csv *.xml *.json)"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.RASTER, "Orthophoto the boxes belong to"))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Review layer", "GeoPackage (*.gpkg)"))

    def processAlgorithm(self, parameters, context, feedback):
        raster = self.parameterAsRasterLayer(parameters, self.RASTER, context)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        try:
            path = import_annotations(self.parameterAsFile(parameters, self.ANNOTATIONS, context), raster, output)
        except TreecrownsError as exc:
            raise QgsProcessingException(str(exc)) from exc
        return {self.OUTPUT: str(path)}


class ExportTrainingSetAlgorithm(TreecrownsAlgorithm):
    ANNOTATIONS = "ANNOTATIONS"
    RASTERS = "RASTERS"
    REGIONS = "REGIONS"
    CHIP_SIZE = "CHIP_SIZE"
    OUTPUT = "OUTPUT"

    NAME = "export_training_set"
    TITLE = "Export crowns as a training set"
    HELP = (
        "Cuts the rasters (only inside REGIONS, if given) into georeferenced GeoTIFF chips and writes their "
        "crown boxes as DeepForest CSV (annotations.csv) and COCO JSON (annotations_coco.json), in chip pixels. "
        "Where an area is not a rectangle, chip pixels outside it are black and crowns centred outside it left out."
    )

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterVectorLayer(self.ANNOTATIONS, "Crowns", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterMultipleLayers(self.RASTERS, "Orthophotos", QgsProcessing.TypeRaster))
        self.addParameter(areas_parameter(self.REGIONS))
        self.addParameter(QgsProcessingParameterNumber(self.CHIP_SIZE, "Chip size (pixels)", QgsProcessingParameterNumber.Integer, 400, False, 32, 8192))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Training set folder"))
        self.addOutput(QgsProcessingOutputNumber("CHIPS", "Chips written"))
        self.addOutput(QgsProcessingOutputNumber("CROWNS", "Crowns written"))

    def processAlgorithm(self, parameters, context, feedback):
        crowns = self.parameterAsVectorLayer(parameters, self.ANNOTATIONS, context)
        rasters = self.parameterAsLayerList(parameters, self.RASTERS, context)
        regions = self.parameterAsVectorLayer(parameters, self.REGIONS, context)
        folder = Path(self.parameterAsString(parameters, self.OUTPUT, context))
        try:
            items, warnings = annotations_for_rasters(rasters, crowns, "label", regions)
            for warning in warnings:
                feedback.reportError(f"Warning: {warning}", fatalError=False)
            summary = export_training_set(items, folder, self.parameterAsInt(parameters, self.CHIP_SIZE, context))
        except TreecrownsError as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.pushInfo(f"{summary.crowns} crowns in {summary.chips} chips written to {folder}")
        return {self.OUTPUT: str(folder), "CHIPS": summary.chips, "CROWNS": summary.crowns}
