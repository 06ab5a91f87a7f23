"""The real qgis_process command line, through scripts/qgis-process."""

import json
import os
import subprocess

import numpy as np

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


ALGORITHMS = ("treecrowns:detect", "treecrowns:train", "treecrowns:evaluate", "treecrowns:import_annotations",
              "treecrowns:export_training_set")


def test_qgis_process_lists_every_algorithm():
    done = subprocess.run([str(REPO_SCRIPTS / "qgis-process"), "list"], capture_output=True, text=True, timeout=120)
    for algorithm in ALGORITHMS:
        assert algorithm in done.stdout


def test_qgis_process_enables_the_plugin_where_the_profile_has_it_disabled_and_works_once_enabled(tmp_path):
    settings = tmp_path / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    settings.parent.mkdir(parents=True)
    settings.write_text("[PythonPlugins]\ntreecrowns=false\n")
    environment = {k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME", "QGIS_CUSTOM_CONFIG_PATH")}
    environment["HOME"] = str(tmp_path)
    for attempt in ("disabled in the profile", "enabled by the first call"):
        done = subprocess.run([str(REPO_SCRIPTS / "qgis-process"), "list"], capture_output=True, text=True,
                              timeout=180, env=environment)
        assert all(algorithm in done.stdout for algorithm in ALGORITHMS), (attempt, done.stderr[-2000:])
        assert "treecrowns=true" in settings.read_text().splitlines(), attempt


def test_qgis_process_reports_bad_input_with_an_error_code(tmp_path):
    done = subprocess.run(
        [str(REPO_SCRIPTS / "qgis-process"), "run", "treecrowns:detect", "--", f"INPUT={tmp_path / 'none.tif'}",
         f"OUTPUT={tmp_path / 'x.gpkg'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert not (tmp_path / "x.gpkg").exists()


def test_qgis_process_detects_on_a_folder_of_tiles_as_on_the_orthophoto_they_were_cut_from(osbs_plot, tmp_path):
    """OSBS_029 cut into four tiles: the folder gives the plot's crowns, those on tile borders once."""
    from synthetic import cut_into_tiles

    tiles = cut_into_tiles(osbs_plot.image, tmp_path / "tiles", 200, 200)
    counts = {}
    # The tiles are also detected by two local Dask workers: the same crowns as this process finds.
    for name, source, cluster in (("plot", osbs_plot.image, ""), ("tiles", tiles, ""), ("cluster", tiles, "local:2")):
        done = subprocess.run(
            [str(REPO_SCRIPTS / "qgis-process"), "--json", "run", "treecrowns:detect", "--", f"INPUT={source}",
             f"OUTPUT={tmp_path / name}.gpkg", f"CLUSTER={cluster}"], capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        counts[name] = json.loads(done.stdout[done.stdout.index("{"):])["results"]["CROWN_COUNT"]
    assert counts["cluster"] == counts["tiles"] == counts["plot"] > 10
    def boxes(name):
        rects = (f.geometry().boundingBox() for f in QgsVectorLayer(str(tmp_path / f"{name}.gpkg")).getFeatures())
        return np.array(sorted((r.xMinimum(), r.yMinimum(), r.xMaximum(), r.yMaximum()) for r in rects))

    # GDAL resamples a VRT's tiles one by one, so pixels along tile borders differ in the last digits, and
    # as one 40 m patch sees the whole plot, a few boxes move (measured: one by 14 cm, 1.4 px; with the
    # 100-epoch model, a faint crown at the plot's edge 16 m from a tile border, score 0.27, by 45 cm on
    # one side, IoU 0.825). The same crowns, each once: every box pairs off at IoU > 0.8.
    from treecrowns.core.evaluation import evaluate

    same = evaluate({"plot": boxes("tiles")}, {"plot": boxes("plot")}, iou_threshold=0.8)
    assert same.precision == same.recall == 1.0, same.as_dict()
    on_cluster = evaluate({"plot": boxes("cluster")}, {"plot": boxes("tiles")}, iou_threshold=0.99)
    assert on_cluster.precision == on_cluster.recall == 1.0, on_cluster.as_dict()


def test_without_pytorch_qgis_process_says_what_to_install_instead_of_algorithm_not_found(tmp_path):
    """The plugin zip in a fresh profile whose Python has no torch: every algorithm is there and says how to get it."""
    import zipfile

    built = subprocess.run(["bash", str(REPO_SCRIPTS / "build-zip.sh")], capture_output=True, text=True, check=True,
                           cwd=REPO_SCRIPTS.parent)
    assert "treecrowns.zip" in built.stdout
    profile = tmp_path / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default"
    (profile / "python" / "plugins").mkdir(parents=True)
    zipfile.ZipFile(REPO_SCRIPTS.parent / "dist" / "treecrowns.zip").extractall(profile / "python" / "plugins")
    # QGIS's own Python as a new user has it: no venv, no checkout on the path.
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen",
                   "XDG_RUNTIME_DIR": str(tmp_path)}
    qgis_process = "/usr/bin/qgis_process.bin"
    subprocess.run([qgis_process, "plugins", "enable", "treecrowns"], capture_output=True, env=environment, timeout=120)

    run = subprocess.run([qgis_process, "run", "treecrowns:detect", "--", f"INPUT={tmp_path / 'x.tif'}",
                          f"OUTPUT={tmp_path / 'o.gpkg'}"], capture_output=True, text=True, env=environment, timeout=120)
    printed = run.stdout + run.stderr
    assert run.returncode != 0
    assert "not found" not in printed and "Traceback" not in printed, printed
    folder = profile / "python" / "treecrowns-packages" / "py311"
    assert "torch==2.14.1" in printed and "safetensors==0.8.0" in printed
    assert f"install_packages.py {folder}" in printed, "the command that installs into the folder the plugin reads"
    assert not (tmp_path / "o.gpkg").exists()

    listed = subprocess.run([qgis_process, "list"], capture_output=True, text=True, env=environment, timeout=120)
    assert all(algorithm in listed.stdout for algorithm in ALGORITHMS)
    helped = subprocess.run([qgis_process, "help", "treecrowns:train"], capture_output=True, text=True,
                            env=environment, timeout=120)
    assert "needs PyTorch" in helped.stdout and f"install_packages.py {folder}" in helped.stdout


def test_the_stand_ins_without_pytorch_carry_the_real_algorithms_ids_and_titles():
    from treecrowns.processing_provider.missing_packages import ENGINE_ALGORITHMS
    from treecrowns.processing_provider.provider import TreecrownsProvider

    provider = TreecrownsProvider()
    provider.loadAlgorithms()
    real = {algorithm.name(): algorithm.displayName() for algorithm in provider.algorithms()}
    assert real == ENGINE_ALGORITHMS
