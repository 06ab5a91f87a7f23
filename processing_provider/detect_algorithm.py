"""Processing algorithm ``treecrowns:detect``: a raster in, a layer of crown boxes out."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from ..core.checkpoint import load_checkpoint
from ..core.cluster import parse_cluster, use_worker_python
from ..core.errors import Cancelled, TreecrownsError
from ..core.mosaic import tiles_in
from ..core.prediction import DetectionSettings, Device, detect, uses_views
from ..core.raster import RasterReader
from ..gis.feedback import from_processing
from ..gis.layers import crown_fields, detection_features, detections_crs
from ..gis.output_checks import remove_output_file
from ..gis.python_for_pip import python_executable
from ..gis.resources import CROWNS_STYLE, model_path_or_bundled
from .base import TreecrownsAlgorithm, check_output_file, write_to_sink
from .styling import style_on_load

DEVICES = [Device.AUTO, Device.CPU, Device.CUDA]
# VIEWS choices: as the checkpoint says, one view, four fused turned views.
VIEW_CHOICES = [None, False, True]


class DetectAlgorithm(TreecrownsAlgorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    OUTPUT = "OUTPUT"
    SCORE_THRESHOLD = "SCORE_THRESHOLD"
    NMS_THRESHOLD = "NMS_THRESHOLD"
    PATCH_SIZE = "PATCH_SIZE"
    OVERLAP = "OVERLAP"
    BATCH_SIZE = "BATCH_SIZE"
    DEVICE = "DEVICE"
    RESAMPLE = "RESAMPLE"
    BANDS = "BANDS"
    VIEWS = "VIEWS"
    CLUSTER = "CLUSTER"
    CROWN_COUNT = "CROWN_COUNT"

    NAME = "detect"
    TITLE = "Detect tree crowns"
    HELP = (
        "Finds individual tree crowns in an RGB orthophoto with a RetinaNet detector and writes one box per "
        "crown, with its score and label, in the raster's CRS. INPUT may also be a VRT or a folder of tiles of one "
        "orthophoto (same CRS and pixel grid), read as one mosaic so that crowns on tile borders come out once. MODEL is a treecrowns checkpoint or a "
        "DeepForest model; leave it empty for the bundled model. Thresholds and patch size of 0 mean "
        "'as the checkpoint says'. The raster is resampled to the model's ground resolution unless RESAMPLE is off. "
        "VIEWS: the model can also look at every patch turned four ways and fuse what it finds, "
        "several times slower and usually more accurate; the checkpoint says which way it was calibrated for. "
        "CLUSTER spreads the work over Dask workers: empty runs here, local:N starts N worker processes on this "
        "machine, tcp://host:port uses a running Dask scheduler whose workers can open the raster and the model "
        "at the same paths (see the README)."
    )

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Orthophoto (RGB)"))
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL, "Model checkpoint (empty: bundled model)", optional=True, fileFilter="Checkpoints (*.safetensors *.pt *.pth *.ckpt)"
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SCORE_THRESHOLD, "Score threshold (0: checkpoint default)", QgsProcessingParameterNumber.Double, 0.0, False, 0.0, 1.0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.NMS_THRESHOLD, "Overlap (IoU) above which duplicates are removed (0: checkpoint default)",
                QgsProcessingParameterNumber.Double, 0.0, False, 0.0, 1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.PATCH_SIZE, "Patch size in model pixels (0: checkpoint default)", QgsProcessingParameterNumber.Integer, 0, False, 0, 4096
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.OVERLAP, "Patch overlap (fraction)", QgsProcessingParameterNumber.Double, 0.15, False, 0.0, 0.9)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.BATCH_SIZE, "Patches per batch", QgsProcessingParameterNumber.Integer, 4, False, 1, 256)
        )
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", [d.value for d in DEVICES], defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(self.RESAMPLE, "Resample to the model's ground resolution", True))
        self.addParameter(
            QgsProcessingParameterString(
                self.BANDS, "Red, green and blue band numbers, e.g. 3,2,1 (empty: tagged RGB, else the first three)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.VIEWS, "Views per patch",
                ["as the checkpoint says", "one view (fastest)", "four turned views, fused (slower, usually more accurate)"],
                defaultValue=0,
            )
        )
        cluster = QgsProcessingParameterString(
            self.CLUSTER, "Dask cluster: empty (this process), local:N or tcp://host:port", optional=True
        )
        cluster.setFlags(cluster.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(cluster)
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Tree crowns", QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.CROWN_COUNT, "Number of crowns"))

    @staticmethod
    def _bands(text: str) -> tuple[int, int, int] | None:
        if not text.strip():
            return None
        try:
            bands = tuple(int(part) for part in text.replace(" ", "").split(","))
        except ValueError as exc:
            raise QgsProcessingException(f"BANDS must be three band numbers such as 1,2,3, not {text!r}") from exc
        if len(bands) != 3:
            raise QgsProcessingException(f"BANDS must name exactly three bands (red, green, blue), not {text!r}")
        return bands  # type: ignore[return-value]

    @staticmethod
    def _cluster(text: str) -> str:
        """The cluster, checked; local workers are started with the Python QGIS runs (not sys.executable)."""
        try:
            spec = parse_cluster(text or "")
        except TreecrownsError as exc:
            raise QgsProcessingException(str(exc)) from exc
        if spec is not None and spec.local_workers:
            python = python_executable()
            if python is None:
                raise QgsProcessingException(
                    "cannot find the Python interpreter QGIS runs, to start local workers with; "
                    "start a Dask scheduler and workers yourself and give CLUSTER as tcp://host:port"
                )
            use_worker_python(python)
        return text.strip() if text else ""

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS hook
        """A folder of tiles is a valid INPUT; a file that GDAL cannot open is named as such, not "not found".

        Whether the tiles fit one grid is found when detection opens the folder, so they are read once.
        """
        source = parameters.get(self.INPUT)
        if isinstance(source, str) and Path(source).is_dir():
            try:
                first_tile = tiles_in(source)[0]
            except TreecrownsError as exc:
                return False, str(exc)
            # The other parameters are checked as they would be with one of the tiles as INPUT.
            return super().checkParameterValues({**parameters, self.INPUT: str(first_tile)}, context)
        valid, message = super().checkParameterValues(parameters, context)
        if not valid and isinstance(source, str) and Path(source).is_file():
            try:
                RasterReader(source).close()
            except TreecrownsError as exc:
                return False, str(exc)
        return valid, message

    def _input_source(self, parameters, context) -> str:
        """The raster's path, or a folder of tiles read as one mosaic (core.mosaic)."""
        source = parameters.get(self.INPUT)
        if isinstance(source, str) and Path(source).is_dir():
            return source
        raster = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if raster is None:
            raise QgsProcessingException("the input raster could not be opened; check the path or layer")
        return raster.source()

    def processAlgorithm(self, parameters, context, feedback):
        source = self._input_source(parameters, context)
        model_path = model_path_or_bundled(self.parameterAsFile(parameters, self.MODEL, context))
        settings = DetectionSettings(
            score_threshold=self.parameterAsDouble(parameters, self.SCORE_THRESHOLD, context) or None,
            nms_threshold=self.parameterAsDouble(parameters, self.NMS_THRESHOLD, context) or None,
            patch_size=self.parameterAsInt(parameters, self.PATCH_SIZE, context) or None,
            overlap=self.parameterAsDouble(parameters, self.OVERLAP, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            resample=self.parameterAsBool(parameters, self.RESAMPLE, context),
            bands=self._bands(self.parameterAsString(parameters, self.BANDS, context)),
            test_time_augmentation=VIEW_CHOICES[self.parameterAsEnum(parameters, self.VIEWS, context)],
        )
        cluster = self._cluster(self.parameterAsString(parameters, self.CLUSTER, context))
        destination = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        check_output_file(destination, context)
        progress, should_stop = from_processing(feedback)
        try:
            model = load_checkpoint(model_path)
            feedback.pushInfo(
                f"Model {model_path.name}: labels {list(model.metadata.labels)}, "
                f"{model.metadata.ground_resolution_m} m per pixel, {model.metadata.patch_size} px patches, "
                f"{model.metadata.views_description() + ', fused,' if uses_views(model, settings) else 'one view'} per patch"
            )
            if cluster:
                feedback.pushInfo(f"Detecting on the Dask cluster {cluster}")
            detections = detect(source, model, settings, progress, should_stop, cluster=cluster)
        except Cancelled as exc:
            raise QgsProcessingException(str(exc)) from exc
        except TreecrownsError as exc:
            raise QgsProcessingException(str(exc)) from exc
        for warning in detections.warnings:
            feedback.reportError(f"Warning: {warning}", fatalError=False)
        # The sink is created only now, so a failed or cancelled run writes no layer.
        fields = crown_fields()
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Polygon, detections_crs(detections))
        if sink is None:
            remove_output_file(destination)
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        write_to_sink(sink, detection_features(detections, str(model_path), fields), destination)
        style_on_load(context, dest_id, CROWNS_STYLE)
        feedback.pushInfo(f"{len(detections)} tree crowns found")
        return {self.OUTPUT: dest_id, self.CROWN_COUNT: len(detections)}
