"""Review editing (status, undo, reviewed areas, score filter), import, export and scoped evaluation."""


import numpy as np
import processing
import pytest
import rasterio
from qgis.core import QgsGeometry, QgsPointXY, QgsRasterLayer, QgsRectangle, QgsSymbolLayer, QgsVectorLayer

from sample_plots import crowns_layer
from treecrowns.core.annotations import read_deepforest_csv
from treecrowns.core.errors import AnnotationError
from treecrowns.gis import review
from treecrowns.gis.import_export import export_layer_as_training_set, import_annotations
from treecrowns.gis.layers import open_crowns_layer, write_crown_layer
from treecrowns.core.training import trainable_crowns
from treecrowns.gis.training_data import annotations_for_rasters


@pytest.fixture
def crowns(tmp_path):
    """A crown layer of four predicted crowns with known scores."""
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], dtype=float)
    from qgis.core import QgsCoordinateReferenceSystem

    path = write_crown_layer(tmp_path / "crowns.gpkg", QgsCoordinateReferenceSystem("EPSG:32618"), boxes,
                             [0.9, 0.2, 0.5, 0.1], ["Tree"] * 4, ["predicted"] * 4, "m.safetensors")
    return open_crowns_layer(path, "crowns")


def statuses(layer):
    return sorted(f["status"] for f in layer.getFeatures())


def test_status_follows_edits_and_undo_restores_it(crowns):
    keeper = review.StatusKeeper(crowns)
    crowns.startEditing()
    first = next(crowns.getFeatures()).id()
    crowns.changeGeometry(first, QgsGeometry.fromRect(QgsRectangle(0, 0, 12, 12)))
    assert crowns.getFeature(first)["status"] == "edited"
    review.add_box(crowns, QgsRectangle(80, 0, 90, 10), "Snag")
    crowns.selectByIds([f.id() for f in crowns.getFeatures() if f["status"] == "predicted"][:2])
    assert review.confirm_selected(crowns) == 2
    assert statuses(crowns) == ["added", "confirmed", "confirmed", "edited", "predicted"]
    crowns.undoStack().undo()
    assert statuses(crowns) == ["added", "edited", "predicted", "predicted", "predicted"]
    crowns.selectByIds([first])
    assert review.delete_selected(crowns) == 1 and crowns.featureCount() == 4
    assert crowns.commitChanges()
    on_disk = QgsVectorLayer(crowns.source(), "again", "ogr")
    assert statuses(on_disk) == ["added", "predicted", "predicted", "predicted"]
    keeper.disconnect()


def test_new_features_from_qgis_tools_default_to_added(crowns):
    review.StatusKeeper(crowns)
    crowns.startEditing()
    from qgis.core import QgsVectorLayerUtils

    feature = QgsVectorLayerUtils.createFeature(crowns, QgsGeometry.fromRect(QgsRectangle(1, 1, 2, 2)))
    assert feature["status"] == "added"


def test_unreviewed_crowns_come_least_confident_first(crowns):
    scores = [crowns.getFeature(fid)["score"] for fid in review.unreviewed_in_review_order(crowns)]
    assert scores == [0.1, 0.2, 0.5, 0.9]
    assert len(review.unreviewed_in_review_order(crowns, threshold=0.3)) == 2


def test_score_filter_is_a_live_rendering_rule(crowns):
    review.show_scores_from(crowns, 0.45)
    from qgis.core import QgsRenderContext

    for symbol in crowns.renderer().symbols(QgsRenderContext()):
        prop = symbol.symbolLayer(0).dataDefinedProperties().property(QgsSymbolLayer.PropertyLayerEnabled)
        assert prop.isActive() and '"score" >= 0.4500' in prop.expressionString()
    assert crowns.featureCount() == 4, "filtering hides crowns, it does not remove them"


def outline_colours(layer):
    """Each crown's outline colour as the layer's style draws it, by feature id."""
    from qgis.core import QgsRenderContext

    renderer, context = layer.renderer().clone(), QgsRenderContext()
    renderer.startRender(context, layer.fields())
    colours = {f.id(): renderer.symbolsForFeature(f, context)[0].symbolLayer(0).strokeColor().name() for f in layer.getFeatures()}
    renderer.stopRender(context)
    return colours


def test_crowns_a_person_confirmed_or_added_are_drawn_apart_from_predicted_ones(crowns):
    predicted = outline_colours(crowns)
    assert len(set(predicted.values())) >= 3, "predicted crowns are outlined by score"
    by_score = sorted(predicted, key=lambda fid: crowns.getFeature(fid)["score"])
    doubtful, confident = by_score[0], by_score[-1]
    crowns.startEditing()
    crowns.selectByIds([confident, doubtful])
    review.confirm_selected(crowns)
    added = review.add_box(crowns, QgsRectangle(80, 0, 90, 10), "Tree")
    drawn = outline_colours(crowns)
    reviewed = {drawn[confident], drawn[doubtful], drawn[added]}
    assert len(reviewed) == 1 and reviewed.isdisjoint(predicted.values()), "one colour for reviewed crowns, unlike any score's"


def test_reviewed_areas_live_in_the_same_geopackage(crowns):
    areas = review.reviewed_areas_layer(crowns)
    review.mark_reviewed(areas, QgsRectangle(0, 0, 35, 10), "now")
    assert areas.commitChanges()
    again = review.existing_reviewed_areas(crowns)
    assert again.featureCount() == 1 and review.gpkg_path_of(again) == review.gpkg_path_of(crowns)
    assert QgsVectorLayer(crowns.source(), "c", "ogr").featureCount() == 4, "the crowns are untouched"


def mark_left_half_reviewed(crowns, raster):
    """Save a reviewed area over the left half of ``raster``; returns the raster's extent."""
    e = raster.extent()
    areas = review.reviewed_areas_layer(crowns)
    review.mark_reviewed(areas, QgsRectangle(e.xMinimum(), e.yMinimum(), e.center().x(), e.yMaximum()), "now")
    assert areas.commitChanges()
    return e


def test_training_uses_only_reviewed_areas(osbs_plot, tmp_path):
    reference = crowns_layer([osbs_plot], tmp_path / "ref.gpkg")
    raster = QgsRasterLayer(str(osbs_plot.image), "plot")
    mark_left_half_reviewed(reference, raster)
    [item], _ = annotations_for_rasters([raster], reference, "label", review.existing_reviewed_areas(reference))
    assert np.allclose([a.bounds for a in item.regions], [(0.0, 0.0, 200.0, 400.0)])


def test_a_reviewed_area_reshaped_into_a_triangle_is_used_as_a_triangle(osbs_plot, tmp_path):
    """Areas edited with QGIS's own tools are any polygon: training and scoring follow its outline."""
    reference = crowns_layer([osbs_plot], tmp_path / "ref.gpkg")
    raster = QgsRasterLayer(str(osbs_plot.image), "plot")
    e = raster.extent()
    areas = review.reviewed_areas_layer(reference)
    review.mark_reviewed(areas, e, "now")
    assert areas.commitChanges()
    areas.startEditing()
    [feature] = list(areas.getFeatures())
    corners = [QgsPointXY(e.xMinimum(), e.yMaximum()), QgsPointXY(e.xMaximum(), e.yMaximum()), QgsPointXY(e.xMinimum(), e.yMinimum())]
    areas.changeGeometry(feature.id(), QgsGeometry.fromPolygonXY([corners]))  # the upper-left half of the plot
    assert areas.commitChanges()
    [item], _ = annotations_for_rasters([raster], reference, "label", areas)
    [triangle] = item.regions
    assert np.allclose(triangle.bounds, (0.0, 0.0, 400.0, 400.0)) and triangle.area == pytest.approx(400 * 400 / 2)
    centres = (item.boxes[:, :2] + item.boxes[:, 2:]) / 2
    upper_left = int((centres.sum(axis=1) < 400).sum())
    assert 0 < upper_left < len(item.boxes)
    assert trainable_crowns([item]) == upper_left
    predictions = crowns_layer([osbs_plot], tmp_path / "pred.gpkg")
    predictions.startEditing()
    for f in predictions.getFeatures():  # every prediction outside the triangle is wrong
        c = f.geometry().centroid().asPoint()
        if (c.x() - e.xMinimum()) + (e.yMaximum() - c.y()) > e.width():
            predictions.translateFeature(f.id(), 0, 1000)
    predictions.commitChanges()
    inside = processing.run("treecrowns:evaluate", {"PREDICTIONS": predictions, "GROUND_TRUTH": reference, "REGIONS": areas, "OUTPUT": "memory:"})
    assert inside["F1"] == pytest.approx(1.0)


def test_import_deepforest_csv_puts_boxes_on_the_raster(osbs_plot, tmp_path):
    csv = osbs_plot.image.with_suffix(".csv")  # the package's DeepForest CSV of the same crowns
    raster = QgsRasterLayer(str(osbs_plot.image), "plot")
    path = import_annotations(str(csv), raster, tmp_path / "imported.gpkg")
    layer = open_crowns_layer(path, "imported")
    [truth] = read_deepforest_csv(csv)
    assert layer.featureCount() == len(truth.boxes) == 61 and layer.crs().authid() == "EPSG:32617"
    assert set(statuses(layer)) == {"confirmed"}
    with rasterio.open(osbs_plot.image) as src:
        x0, y1 = src.transform * (truth.boxes[0][0], truth.boxes[0][1])
    boxes = [f.geometry().boundingBox() for f in layer.getFeatures()]
    assert any(abs(b.xMinimum() - x0) < 1e-6 and abs(b.yMaximum() - y1) < 1e-6 for b in boxes)


def test_crowns_over_an_unreferenced_raster_train_on_the_pixels_they_cover(soap_plot, tmp_path):
    """QGIS draws a raster without georeferencing at x = column, y = -row; imported and drawn crowns live there."""
    raster = QgsRasterLayer(str(soap_plot.image), "plain")
    assert not raster.crs().isValid()
    voc = soap_plot.image.with_suffix(".xml")
    layer = open_crowns_layer(import_annotations(str(voc), raster, tmp_path / "plain.gpkg"), "plain")
    assert all(raster.extent().contains(f.geometry().boundingBox()) for f in layer.getFeatures())
    [item], _ = annotations_for_rasters([raster], layer, "label")
    assert np.allclose(np.sort(item.boxes, axis=0), np.sort(soap_plot.crowns.boxes, axis=0))
    assert sorted(item.labels) == sorted(soap_plot.crowns.labels)  # Alive and Dead, as drawn


def test_import_from_a_polygon_layer_and_bad_files(osbs_plot, tmp_path):
    reference = crowns_layer([osbs_plot], tmp_path / "ref.gpkg")
    raster = QgsRasterLayer(str(osbs_plot.image), "plot")
    layer = open_crowns_layer(import_annotations(reference, raster, tmp_path / "from_layer.gpkg"), "x")
    assert layer.featureCount() == reference.featureCount()
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        import_annotations(str(bogus), raster, tmp_path / "bogus.gpkg")


def test_export_reviewed_layer_as_chips_csv_and_coco(osbs_plot, tmp_path):
    reference = crowns_layer([osbs_plot], tmp_path / "ref.gpkg")
    raster = QgsRasterLayer(str(osbs_plot.image), "plot")
    summary = export_layer_as_training_set(reference, [raster], tmp_path / "export", reviewed_only=False, chip_size=200)
    assert summary.chips == 4 and summary.csv_path.exists() and summary.coco_path.exists()
    assert summary.crowns >= reference.featureCount() - 6  # a crown split across chips may be left out of both
    assert len(list((tmp_path / "export" / "images").glob("*.tif"))) == 4


def test_evaluate_inside_reviewed_areas_only(osbs_plot, tmp_path):
    reference = crowns_layer([osbs_plot], tmp_path / "ref.gpkg")
    predictions = crowns_layer([osbs_plot], tmp_path / "pred.gpkg")
    raster = QgsRasterLayer(str(osbs_plot.image), "plot")
    e = mark_left_half_reviewed(reference, raster)
    predictions.startEditing()
    for f in predictions.getFeatures():  # every prediction on the right half is wrong
        if f.geometry().centroid().asPoint().x() > e.center().x():
            predictions.translateFeature(f.id(), 0, 1000)
    predictions.commitChanges()
    everywhere = processing.run("treecrowns:evaluate", {"PREDICTIONS": predictions, "GROUND_TRUTH": reference, "OUTPUT": "memory:"})
    inside = processing.run("treecrowns:evaluate", {"PREDICTIONS": predictions, "GROUND_TRUTH": reference,
                                                     "REGIONS": review.existing_reviewed_areas(reference), "OUTPUT": "memory:"})
    assert everywhere["F1"] < 1.0 and inside["F1"] == pytest.approx(1.0)


def test_import_and_export_as_processing_algorithms(osbs_plot, tmp_path):
    raster = str(osbs_plot.image)
    imported = processing.run("treecrowns:import_annotations", {"ANNOTATIONS": str(osbs_plot.image.with_suffix(".csv")), "RASTER": raster,
                                                                "OUTPUT": str(tmp_path / "imp.gpkg")})
    layer = open_crowns_layer(imported["OUTPUT"], "imported")
    assert layer.featureCount() == 61
    exported = processing.run("treecrowns:export_training_set", {"ANNOTATIONS": layer, "RASTERS": [raster], "CHIP_SIZE": 400,
                                                                 "OUTPUT": str(tmp_path / "set")})
    assert exported["CHIPS"] == 1 and exported["CROWNS"] == 61
    assert (tmp_path / "set" / "annotations.csv").exists()


def test_areas_may_be_curved_polygons_but_not_points():
    from qgis.core import QgsCoordinateReferenceSystem, QgsFeature

    from treecrowns.gis.layers import layer_areas

    def memory_layer(kind, wkt):
        layer = QgsVectorLayer(f"{kind}?crs=EPSG:32618", "areas", "memory")
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        layer.dataProvider().addFeatures([feature])
        return layer

    utm = QgsCoordinateReferenceSystem("EPSG:32618")
    circle = memory_layer("CurvePolygon", "CurvePolygon(CircularString(0 0, 10 10, 20 0, 10 -10, 0 0))")
    [area] = layer_areas(circle, utm)
    assert area.geom_type == "Polygon" and area.area == pytest.approx(np.pi * 100, rel=0.01)
    with pytest.raises(AnnotationError, match="holds points; areas must be polygons"):
        layer_areas(memory_layer("Point", "Point(1 1)"), utm)
