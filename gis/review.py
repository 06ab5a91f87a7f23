"""Reviewing a crown layer: review status, reviewed areas, score filter, and the order of review.

Every change goes through the layer's edit buffer, so QGIS's undo/redo covers it and
nothing reaches the GeoPackage until the user saves the layer.
"""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDefaultValue,
    QgsFeature,
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProject,
    QgsProperty,
    QgsRectangle,
    QgsRenderContext,
    QgsSymbolLayer,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core.crown_layer import STATUS_PREDICTED
from ..core.errors import OutputError

STATUS_CONFIRMED = "confirmed"
STATUS_ADDED = "added"
STATUS_EDITED = "edited"
REVIEWED_AREAS_LAYER = "reviewed_areas"


def gpkg_path_of(layer: QgsVectorLayer) -> str:
    """The GeoPackage file behind a layer (its source without the ``|layername=`` part)."""
    return layer.source().split("|")[0]


class StatusKeeper:
    """Keeps the ``status`` field of a crown layer up to date while the user edits it.

    New crowns get ``added`` (a field default, so it also holds for QGIS's own
    digitising tools); a predicted or confirmed crown whose geometry changes becomes
    ``edited``. Deleted crowns simply leave the layer.
    """

    def __init__(self, layer: QgsVectorLayer) -> None:
        self.layer = layer
        self.status_index = layer.fields().indexOf("status")
        if self.status_index < 0:
            raise OutputError(f"layer '{layer.name()}' has no 'status' field; it is not a crown layer")
        layer.setDefaultValueDefinition(self.status_index, QgsDefaultValue(f"'{STATUS_ADDED}'"))
        layer.geometryChanged.connect(self._geometry_changed)

    def disconnect(self) -> None:
        self.layer.geometryChanged.disconnect(self._geometry_changed)

    def _geometry_changed(self, fid: int, _geometry: QgsGeometry) -> None:
        feature = self.layer.getFeature(fid)
        if feature.isValid() and feature["status"] in (STATUS_PREDICTED, STATUS_CONFIRMED):
            self.layer.changeAttributeValue(fid, self.status_index, STATUS_EDITED)


def set_status(layer: QgsVectorLayer, fids: list[int], status: str, command: str) -> int:
    """Set ``status`` on features as one undoable edit; starts editing if needed."""
    if not fids:
        return 0
    if not layer.isEditable():
        layer.startEditing()
    index = layer.fields().indexOf("status")
    layer.beginEditCommand(command)
    for fid in fids:
        layer.changeAttributeValue(fid, index, status)
    layer.endEditCommand()
    return len(fids)


def confirm_selected(layer: QgsVectorLayer) -> int:
    """Mark the selected predicted crowns as checked and correct."""
    fids = [f.id() for f in layer.getSelectedFeatures() if f["status"] == STATUS_PREDICTED]
    return set_status(layer, fids, STATUS_CONFIRMED, "Confirm crowns")


def delete_selected(layer: QgsVectorLayer) -> int:
    """Remove the selected crowns (undoable)."""
    fids = list(layer.selectedFeatureIds())
    if not fids:
        return 0
    if not layer.isEditable():
        layer.startEditing()
    layer.beginEditCommand("Delete crowns")
    layer.deleteFeatures(fids)
    layer.endEditCommand()
    return len(fids)


def add_box(layer: QgsVectorLayer, rect: QgsRectangle, label: str) -> int:
    """Add a crown drawn by the user, with its label and status ``added`` (undoable)."""
    if not layer.isEditable():
        layer.startEditing()
    feature = QgsFeature(layer.fields())
    feature.setGeometry(QgsGeometry.fromRect(rect))
    feature["label"] = label
    feature["status"] = STATUS_ADDED
    layer.beginEditCommand("Add crown")
    layer.addFeature(feature)
    layer.endEditCommand()
    return feature.id()


def show_scores_from(layer: QgsVectorLayer, threshold: float) -> None:
    """Hide predicted crowns scored under ``threshold`` on the map, without touching the data.

    Crowns the user added, confirmed or edited stay visible whatever their score.
    """
    expression = f'"score" >= {threshold:.4f} OR "status" <> \'{STATUS_PREDICTED}\' OR "score" IS NULL'
    renderer = layer.renderer()
    for symbol in renderer.symbols(QgsRenderContext()):
        for symbol_layer in symbol.symbolLayers():
            symbol_layer.setDataDefinedProperty(QgsSymbolLayer.PropertyLayerEnabled, QgsProperty.fromExpression(expression))
    layer.triggerRepaint()


def unreviewed_in_review_order(layer: QgsVectorLayer, threshold: float = 0.0) -> list[int]:
    """Predicted crowns not yet reviewed, least confident first: they most need a look."""
    request = QgsFeatureRequest().setFilterExpression(
        f"\"status\" = '{STATUS_PREDICTED}' AND (\"score\" >= {threshold:.4f} OR \"score\" IS NULL)"
    )
    features = sorted(layer.getFeatures(request), key=lambda f: (f["score"] if f["score"] is not None else 0.0, f.id()))
    return [f.id() for f in features]


def existing_reviewed_areas(crowns: QgsVectorLayer) -> QgsVectorLayer | None:
    """The reviewed-areas layer saved in the crown layer's GeoPackage, or None if there is none."""
    layer = QgsVectorLayer(f"{gpkg_path_of(crowns)}|layername={REVIEWED_AREAS_LAYER}", f"{crowns.name()} reviewed areas", "ogr")
    return layer if layer.isValid() else None


def reviewed_areas_layer(crowns: QgsVectorLayer) -> QgsVectorLayer:
    """The reviewed-areas layer stored in the crown layer's GeoPackage, created when missing."""
    existing = existing_reviewed_areas(crowns)
    if existing is not None:
        return existing
    path = gpkg_path_of(crowns)
    uri = f"{path}|layername={REVIEWED_AREAS_LAYER}"
    fields = QgsFields()
    fields.append(QgsField("reviewed", QVariant.String))
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = REVIEWED_AREAS_LAYER
    options.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteLayer
    crs = crowns.crs() if crowns.crs().isValid() else QgsCoordinateReferenceSystem()
    writer = QgsVectorFileWriter.create(path, fields, QgsWkbTypes.Polygon, crs, QgsProject.instance().transformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.NoError:
        raise OutputError(f"cannot add the reviewed-areas layer to {path}: {writer.errorMessage()}")
    del writer
    layer = QgsVectorLayer(uri, f"{crowns.name()} reviewed areas", "ogr")
    if not layer.isValid():
        raise OutputError(f"the reviewed-areas layer in {path} could not be opened")
    return layer


def mark_reviewed(areas: QgsVectorLayer, rect: QgsRectangle, when: str) -> None:
    """Record that every crown inside ``rect`` is now correct (undoable)."""
    if not areas.isEditable():
        areas.startEditing()
    feature = QgsFeature(areas.fields())
    feature.setGeometry(QgsGeometry.fromRect(rect))
    feature["reviewed"] = when
    areas.beginEditCommand("Mark area reviewed")
    areas.addFeature(feature)
    areas.endEditCommand()
