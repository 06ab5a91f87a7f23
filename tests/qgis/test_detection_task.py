"""The background detection task: result layer on success, nothing on disk after cancel or failure."""

import time
from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QCoreApplication

from synthetic import write_raster
from treecrowns.core.prediction import DetectionSettings
from treecrowns.gis.detection_task import DetectionTask
from treecrowns.gis.layers import add_to_project, open_crowns_layer, unique_layer_name, unique_path
from treecrowns.gis.resources import BUNDLED_MODEL


def run_task(raster, output, model=BUNDLED_MODEL, cancel=False, timeout=120, close_project=False):
    outcomes = []
    task = DetectionTask(str(raster), str(model), Path(output), DetectionSettings(), outcomes.append)
    QgsApplication.taskManager().addTask(task)
    if cancel:
        task.cancel()
    if close_project:
        QgsProject.instance().clear()
    deadline = time.monotonic() + timeout
    while not outcomes and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    assert outcomes, "the task did not finish in time"
    return outcomes[0]


def test_task_writes_a_styled_editable_crown_layer(osbs_plot, tmp_path):
    output = tmp_path / "crowns.gpkg"
    outcome = run_task(osbs_plot.image, output)
    assert outcome.error is None and not outcome.cancelled and outcome.crown_count > 0
    layer = open_crowns_layer(output, "crowns")
    assert layer.featureCount() == outcome.crown_count
    assert layer.crs().authid() == "EPSG:32617"
    assert layer.renderer().type() == "RuleRenderer"
    assert any("score" in rule.label() for rule in layer.renderer().rootRule().children()), "outlined by score"
    assert layer.startEditing() and layer.deleteFeature(next(layer.getFeatures()).id()) and layer.commitChanges()
    assert QgsVectorLayer(str(output)).featureCount() == outcome.crown_count - 1


def test_cancelled_task_leaves_no_layer_on_disk(osbs_plot, tmp_path):
    output = tmp_path / "crowns.gpkg"
    outcome = run_task(osbs_plot.image, output, cancel=True)
    assert outcome.cancelled
    assert list(tmp_path.iterdir()) == [], "neither the layer nor a temporary file may remain"


def test_failed_task_reports_the_reason(tmp_path):
    raster = write_raster(tmp_path / "r.tif", 64, 64)
    bad_model = tmp_path / "model.safetensors"
    bad_model.write_bytes(b"\x00" * 64)
    outcome = run_task(raster, tmp_path / "crowns.gpkg", model=bad_model)
    assert not outcome.cancelled and "not a valid checkpoint" in outcome.error
    assert not (tmp_path / "crowns.gpkg").exists()


def test_existing_files_are_never_overwritten_by_default_names(tmp_path):
    first = tmp_path / "plot_crowns.gpkg"
    first.write_text("precious")
    assert unique_path(first) == tmp_path / "plot_crowns_2.gpkg"
    assert first.read_text() == "precious"


def test_a_second_detection_layer_gets_a_name_of_its_own():
    taken = ["plot crowns", "plot crowns (2)", "plot"]
    assert unique_layer_name("plot crowns", taken) == "plot crowns (3)"
    assert unique_layer_name("other crowns", taken) == "other crowns"


def test_layers_added_to_the_project_never_share_a_name():
    project = QgsProject.instance()
    layers = [QgsVectorLayer("Polygon", "plot crowns", "memory") for _ in range(2)]
    try:
        for layer in layers:
            add_to_project(layer)
        assert [layer.name() for layer in layers] == ["plot crowns", "plot crowns (2)"]
    finally:
        project.removeMapLayers([layer.id() for layer in layers])


def test_output_folder_that_does_not_exist_is_reported(osbs_plot, tmp_path):
    outcome = run_task(osbs_plot.image, tmp_path / "missing" / "crowns.gpkg")
    assert "does not exist" in outcome.error
    assert list(tmp_path.iterdir()) == []


def test_closing_the_project_while_detecting_stops_the_task_and_writes_nothing(osbs_plot, tmp_path):
    QgsProject.instance().addMapLayer(QgsVectorLayer("Polygon", "some work", "memory"))
    outcome = run_task(osbs_plot.image, tmp_path / "crowns.gpkg", close_project=True)
    assert outcome.cancelled and list(tmp_path.iterdir()) == []
    QgsProject.instance().clear()  # a finished task no longer listens: clearing again is harmless
    assert run_task(osbs_plot.image, tmp_path / "again.gpkg").crown_count > 0
