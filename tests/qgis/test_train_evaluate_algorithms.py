"""treecrowns:train and treecrowns:evaluate through QGIS Processing, on NEON plots."""

import processing
import pytest
from qgis.core import QgsProcessingException

from qgis_layers import neon_crowns_layer
from synthetic import write_raster
from treecrowns.core.checkpoint import load_checkpoint
from treecrowns.gis.resources import BUNDLED_MODEL

PLOTS = ["HARV_026.tif", "HARV_037.tif"]  # 35 and 42 crowns: either one validates


def test_train_from_a_crown_layer_writes_a_model_that_records_its_data(neon, tmp_path):
    crowns = neon_crowns_layer(neon, PLOTS, tmp_path / "crowns.gpkg")
    output = tmp_path / "retrained.safetensors"
    result = processing.run(
        "treecrowns:train",
        {
            "RASTERS": [str(neon / "images" / p) for p in PLOTS],
            "ANNOTATIONS": crowns,
            "EPOCHS": 1,
            "BATCH_SIZE": 2,
            "VALIDATION_SHARE": 0.5,
            "OUTPUT_MODEL": str(output),
        },
    )
    assert result["OUTPUT_MODEL"] == str(output) and 0.0 <= result["F1"] <= 1.0
    model = load_checkpoint(output)
    assert model.metadata.labels == ("Tree",)
    assert model.metadata.provenance["parent"] == str(BUNDLED_MODEL)
    assert model.metadata.provenance["training_data"]["crowns"] == crowns.featureCount()
    assert model.metadata.metrics["validation"]["f1"] == pytest.approx(result["F1"])


def test_train_refuses_labels_the_base_model_does_not_have(neon, tmp_path):
    crowns = neon_crowns_layer(neon, PLOTS[:1], tmp_path / "dead.gpkg", label="Dead")
    with pytest.raises(QgsProcessingException, match=r"class\(es\) \['Dead'\] but the base model has 1"):
        processing.run("treecrowns:train", {"RASTERS": [str(neon / "images" / PLOTS[0])], "ANNOTATIONS": crowns,
                                            "EPOCHS": 1, "OUTPUT_MODEL": str(tmp_path / "m.safetensors")})
    assert not (tmp_path / "m.safetensors").exists()


def test_train_refuses_an_empty_layer_and_crowns_off_the_raster(neon, tmp_path):
    crowns = neon_crowns_layer(neon, PLOTS[:1], tmp_path / "crowns.gpkg")
    elsewhere = write_raster(tmp_path / "elsewhere.tif", 100, 100)  # same CRS, kilometres away
    with pytest.raises(QgsProcessingException, match="lie on the chosen raster"):
        processing.run("treecrowns:train", {"RASTERS": [str(elsewhere)], "ANNOTATIONS": crowns, "EPOCHS": 1,
                                            "OUTPUT_MODEL": str(tmp_path / "m.safetensors")})
    crowns.dataProvider().truncate()
    with pytest.raises(QgsProcessingException, match="has no features"):
        processing.run("treecrowns:train", {"RASTERS": [str(neon / "images" / PLOTS[0])], "ANNOTATIONS": crowns,
                                            "EPOCHS": 1, "OUTPUT_MODEL": str(tmp_path / "m.safetensors")})


def test_evaluate_scores_detections_and_writes_the_outcome_of_each_box(neon, tmp_path):
    reference = neon_crowns_layer(neon, PLOTS[:1], tmp_path / "reference.gpkg")
    predictions = neon_crowns_layer(neon, PLOTS[:1], tmp_path / "predictions.gpkg")
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


def test_train_can_add_a_new_class(neon, tmp_path):
    crowns = neon_crowns_layer(neon, PLOTS[:1], tmp_path / "dead.gpkg", label="Dead")
    output = tmp_path / "two_classes.safetensors"
    processing.run("treecrowns:train", {"RASTERS": [str(neon / "images" / PLOTS[0])], "ANNOTATIONS": crowns, "EPOCHS": 1,
                                        "BATCH_SIZE": 2, "NEW_LABELS": True, "OUTPUT_MODEL": str(output)})
    assert load_checkpoint(output).metadata.labels == ("Tree", "Dead")
