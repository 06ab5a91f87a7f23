"""treecrowns:train and treecrowns:evaluate through QGIS Processing, on the public NEON sample plots."""

from dataclasses import replace

import processing
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from sample_plots import crowns_layer
from synthetic import write_raster
from treecrowns.core.checkpoint import load_checkpoint, save_checkpoint
from treecrowns.core.prediction import computes_bfloat16, resolve_device
from treecrowns.core.retraining import CHECKED_ON
from treecrowns.core.sample_data import georeferenced_copy
from treecrowns.gis.resources import BUNDLED_MODEL


@pytest.fixture
def plots(osbs_plot, soap_plot, tmp_path):
    """OSBS_029 (61 crowns) and SOAP_061 (37) in one CRS, so that one crown layer covers both."""
    soap = georeferenced_copy(soap_plot, tmp_path / "SOAP_061.tif", crs="EPSG:32617", origin=(405000.0, 3285000.0))
    return [osbs_plot, soap]


def test_train_from_a_crown_layer_writes_a_model_that_records_its_data(plots, tmp_path):
    crowns = crowns_layer(plots, tmp_path / "crowns.gpkg", label="Tree")
    output = tmp_path / "retrained.safetensors"
    result = processing.run(
        "treecrowns:train",
        {
            "RASTERS": [str(plot.image) for plot in plots],
            "ANNOTATIONS": crowns,
            "EPOCHS": 1,
            "BATCH_SIZE": 2,
            "VALIDATION_SHARE": 0.5,
            "OUTPUT_MODEL": str(output),
        },
    )
    assert result["OUTPUT_MODEL"] == str(output) and 0.0 <= result["F1"] <= 1.0
    # Two plots: each learnt by a model scored on the other, beside the bundled model; was the new one below it?
    assert 0.0 < result["BASE_F1"] <= 1.0
    assert result["WORSE_THAN_BASE"] == int(result["F1"] < result["BASE_F1"])
    model = load_checkpoint(output)
    assert model.metadata.labels == ("Tree",)
    assert model.metadata.provenance["parent"] == str(BUNDLED_MODEL)
    assert model.metadata.provenance["training_data"]["crowns"] == crowns.featureCount() == 61 + 37
    assert model.metadata.metrics["validation"]["f1"] == pytest.approx(result["F1"])
    assert model.metadata.metrics["validation"]["base_f1"] == pytest.approx(result["BASE_F1"])
    assert model.metadata.metrics["validation"]["measured_on"] == CHECKED_ON


def test_train_refuses_labels_the_base_model_does_not_have(plots, tmp_path):
    soap = plots[1]
    crowns = crowns_layer([soap], tmp_path / "alive_dead.gpkg")  # SOAP_061's crowns are labelled Alive or Dead
    with pytest.raises(QgsProcessingException, match=r"class\(es\) \['Alive', 'Dead'\] but the base model has 1"):
        processing.run("treecrowns:train", {"RASTERS": [str(soap.image)], "ANNOTATIONS": crowns,
                                            "EPOCHS": 1, "OUTPUT_MODEL": str(tmp_path / "m.safetensors")})
    assert not (tmp_path / "m.safetensors").exists()


def test_train_refuses_an_empty_layer_and_crowns_off_the_raster(osbs_plot, tmp_path):
    crowns = crowns_layer([osbs_plot], tmp_path / "crowns.gpkg")
    elsewhere = write_raster(tmp_path / "elsewhere.tif", 100, 100)  # another UTM zone, far away
    with pytest.raises(QgsProcessingException, match="lie on the chosen raster"):
        processing.run("treecrowns:train", {"RASTERS": [str(elsewhere)], "ANNOTATIONS": crowns, "EPOCHS": 1,
                                            "OUTPUT_MODEL": str(tmp_path / "m.safetensors")})
    crowns.dataProvider().truncate()
    with pytest.raises(QgsProcessingException, match="has no features"):
        processing.run("treecrowns:train", {"RASTERS": [str(osbs_plot.image)], "ANNOTATIONS": crowns,
                                            "EPOCHS": 1, "OUTPUT_MODEL": str(tmp_path / "m.safetensors")})


def test_evaluate_scores_detections_and_writes_the_outcome_of_each_box(osbs_plot, tmp_path):
    reference = crowns_layer([osbs_plot], tmp_path / "reference.gpkg")
    predictions = crowns_layer([osbs_plot], tmp_path / "predictions.gpkg")
    predictions.startEditing()
    ids = [f.id() for f in predictions.getFeatures()]
    predictions.deleteFeatures(ids[:5])  # five crowns missed
    first = next(predictions.getFeatures())
    predictions.translateFeature(first.id(), 100.0, 0.0)  # one prediction far off: a false positive and a miss
    predictions.commitChanges()
    n = reference.featureCount()
    result = processing.run("treecrowns:evaluate", {"PREDICTIONS": predictions, "GROUND_TRUTH": reference, "OUTPUT": "memory:"})
    assert result["RECALL"] == pytest.approx((n - 6) / n)
    assert result["PRECISION"] == pytest.approx((n - 6) / (n - 5))
    outcomes = [f["outcome"] for f in result["OUTPUT"].getFeatures()]
    assert outcomes.count("true positive") == n - 6
    assert outcomes.count("false positive") == 1 and outcomes.count("missed") == 6


def test_train_can_add_new_classes_from_the_label_field(plots, tmp_path):
    soap = plots[1]
    crowns = crowns_layer([soap], tmp_path / "alive_dead.gpkg")
    output = tmp_path / "three_classes.safetensors"
    processing.run("treecrowns:train", {"RASTERS": [str(soap.image)], "ANNOTATIONS": crowns, "EPOCHS": 1,
                                        "BATCH_SIZE": 2, "NEW_LABELS": True, "OUTPUT_MODEL": str(output)})
    labels = load_checkpoint(output).metadata.labels
    assert labels[0] == "Tree" and sorted(labels[1:]) == ["Alive", "Dead"]


class InfoLog(QgsProcessingFeedback):
    """Keeps the lines an algorithm writes to the Processing log."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def pushInfo(self, info):
        self.lines.append(info)
        super().pushInfo(info)


def test_train_starts_from_the_rate_the_base_model_states_unless_one_is_given(osbs_plot, tmp_path):
    base = load_checkpoint(BUNDLED_MODEL)
    base.metadata = replace(base.metadata, retraining_learning_rate=0.004)
    base_path = save_checkpoint(base, tmp_path / "base.safetensors")
    crowns = crowns_layer([osbs_plot], tmp_path / "crowns.gpkg", label="Tree")
    parameters = {"RASTERS": [str(osbs_plot.image)], "ANNOTATIONS": crowns, "BASE_MODEL": str(base_path),
                  "EPOCHS": 1, "BATCH_SIZE": 2}
    for given, used in ((None, "0.004"), (0.002, "0.002")):
        log = InfoLog()
        output = tmp_path / f"retrained-{used}.safetensors"
        rate = {} if given is None else {"LEARNING_RATE": given}
        processing.run("treecrowns:train", {**parameters, **rate, "OUTPUT_MODEL": str(output)}, feedback=log)
        assert f"Learning rate: {used}" in log.lines
        precision = "bfloat16" if computes_bfloat16(resolve_device("auto")[0]) else "float32"
        assert any(line.startswith(f"Precision: {precision}") for line in log.lines), "the log says which precision ran"
        assert load_checkpoint(output).metadata.retraining_learning_rate == 0.004
