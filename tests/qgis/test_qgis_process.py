"""The real qgis_process command line, through scripts/qgis-process."""

import json
import subprocess

from qgis.core import QgsVectorLayer

REPO_SCRIPTS = __import__("pathlib").Path(__file__).resolve().parents[2] / "scripts"


def test_qgis_process_runs_detect_and_writes_a_layer(osbs_plot, tmp_path):
    output = tmp_path / "crowns.gpkg"
    done = subprocess.run(
        [str(REPO_SCRIPTS / "qgis-process"), "--json", "run", "treecrowns:detect", "--",
         f"INPUT={osbs_plot.image}", f"OUTPUT={output}"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["results"]["CROWN_COUNT"] > 0
    layer = QgsVectorLayer(str(output), "crowns", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32617"
    assert layer.featureCount() == result["results"]["CROWN_COUNT"]


def test_qgis_process_lists_every_algorithm():
    done = subprocess.run([str(REPO_SCRIPTS / "qgis-process"), "list"], capture_output=True, text=True, timeout=120)
    for algorithm in ("treecrowns:detect", "treecrowns:train", "treecrowns:evaluate", "treecrowns:import_annotations",
                      "treecrowns:export_training_set"):
        assert algorithm in done.stdout


def test_qgis_process_reports_bad_input_with_an_error_code(tmp_path):
    done = subprocess.run(
        [str(REPO_SCRIPTS / "qgis-process"), "run", "treecrowns:detect", "--", f"INPUT={tmp_path / 'none.tif'}",
         f"OUTPUT={tmp_path / 'x.gpkg'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert not (tmp_path / "x.gpkg").exists()
