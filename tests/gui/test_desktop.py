"""The plugin in the real QGIS desktop under Xvfb: dock, Detect, a layer on the map, unload."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from treecrowns.core.checkpoint import read_metadata
from treecrowns.core.training_settings import learning_rate_for
from treecrowns.gis.dependencies import CPU_ONLY_INDEX
from treecrowns.gis.resources import BUNDLED_MODEL

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.gui, pytest.mark.slow]


def run_desktop(script: Path, out: Path, raster: Path, timeout: int = 420, with_venv: bool = True) -> dict:
    """Run a driver script in the QGIS desktop; ``with_venv=False`` starts QGIS without torch on its path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").unlink(missing_ok=True)
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)
    venv = [str(REPO / ".venv" / "lib" / "python3.11" / "site-packages")] if with_venv else []
    env.update(
        TREECROWNS_GUI_OUT=str(out),
        TREECROWNS_GUI_RASTER=str(raster),
        QGIS_PLUGINPATH=str(REPO / "build" / "plugins"),
        # The venv's packages, and desktop_harness.py for the driver scripts.
        PYTHONPATH=os.pathsep.join([*venv, str(script.parent)]),
        XDG_RUNTIME_DIR=str(out / "runtime"),
    )
    (out / "runtime").mkdir(mode=0o700, exist_ok=True)
    command = [
        "xvfb-run", "-a", "-s", "-screen 0 1600x1000x24",
        "/usr/bin/qgis.bin", "--noversioncheck", "--nologo", "--noplugins",
        "--profiles-path", str(out / "profiles"), "--code", str(script),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    result_file = out / "result.json"
    assert result_file.exists(), f"QGIS ended (code {done.returncode}) without a result:\n{done.stderr[-3000:]}"
    return json.loads(result_file.read_text())


def test_dock_detects_crowns_on_the_sample_in_the_real_desktop(osbs_plot, tmp_path):
    if shutil.which("xvfb-run") is None:
        pytest.fail("xvfb-run is missing: run scripts/setup.sh")
    from treecrowns.core.checkpoint import read_metadata
    from treecrowns.gis.resources import BUNDLED_MODEL

    out = Path(os.environ.get("TREECROWNS_SCREENSHOTS", tmp_path))
    result = run_desktop(REPO / "tests" / "gui" / "drive_detection.py", out, osbs_plot.image)
    assert "error" not in result, result.get("error")
    assert result["python_errors"] == []
    assert result["toolbar_button"] and result["dock_visible"] and result["task_started"]
    assert result["raster_choices"] == ["sample orthophoto"], "only raster layers are offered"
    assert result["bands_nir_first"] == [2, 3, 4] and result["settings_bands_nir_first"] == [2, 3, 4]
    assert result["bands_sample"] == [1, 2, 3]
    assert "Tree" in result["model_info"] and "0.2 m per pixel" in result["model_info"]
    bundled = read_metadata(BUNDLED_MODEL)
    views = result["views"]
    assert views["checked"] == bundled.test_time_augmentation, "the views checkbox starts as the model says"
    assert views["score"] == pytest.approx(bundled.score_threshold)
    assert views["settings_after_toggle"] == (not bundled.test_time_augmentation)
    assert views["score_after_toggle"] == pytest.approx(bundled.score_threshold_for(not bundled.test_time_augmentation))
    assert views["score_after_toggle_back"] == pytest.approx(bundled.score_threshold)
    [layer] = result["layers"]
    assert layer["name"] == "sample orthophoto crowns" and layer["features"] > 0
    assert layer["crs"] == "EPSG:32617" and layer["inside_raster"]
    assert {"score", "label", "status"} <= set(layer["fields"]) and layer["renderer"] == "RuleRenderer"
    assert f"{layer['features']} crowns written" in result["status_text"]
    # QGIS stayed responsive: the click returned at once, and from the click until the layer was
    # there the event loop never went a second without running the heartbeat timer.
    assert result["detect_click_s"] < 0.5, "detection runs in a background task, not in the click"
    assert result["event_loop_ticks"] >= 1 and result["max_event_loop_gap_s"] < 1.0, result["event_loop_watched_s"]
    bad = result["dock_bad_input"]
    assert "does not exist: create it or choose another output" in bad["output folder missing"]["message"]
    assert "is open as the layer 'sample orthophoto crowns'" in bad["output open as a layer"]["message"]
    assert "not a valid checkpoint" in bad["broken checkpoint"]["message"]
    assert not bad["broken checkpoint"]["detect_enabled"], "Detect stays off while the chosen model cannot be read"
    assert "has no valid pixels: every pixel is nodata" in bad["raster of nodata only"]["message"]
    assert not result["dock_after_unload"] and not result["toolbar_button_after_unload"], "unload() undoes initGui()"
    for name in ("1-dock-open", "2-crowns-detected", "3-bad-input-message"):
        assert (out / f"{name}.png").stat().st_size > 10_000


def test_correct_retrain_and_detect_again_by_mouse_and_keys(osbs_plot, tmp_path):
    out = Path(os.environ.get("TREECROWNS_SCREENSHOTS", tmp_path)) / "loop"
    result = run_desktop(REPO / "tests" / "gui" / "drive_review_loop.py", out, osbs_plot.image, timeout=600)
    assert "error" not in result, result.get("error")
    assert result["python_errors"] == []
    detected = result["detected"]
    assert detected > 2
    assert result["after_drawing"]["count"] == 3 and result["after_drawing"]["statuses"]["added"] == 3
    assert result["after_undo"] == 2 and result["after_redo"] == 3, "drawing is undoable"
    assert result["deleted_with_key"] == 2, "the Delete key removes the selected crowns"
    assert result["selected_to_confirm"] == detected - 2
    assert result["after_confirm"] == {"confirmed": detected - 2, "added": 3}, "the C key confirms the selection"
    assert result["reviewed_areas"] == 2 and result["saved_areas"] == 2
    # Metres from the raster's lower-left corner: the view marked over the west half, the east half drawn.
    (west, east) = sorted(result["reviewed_area_bounds"])
    assert west[:2] == [0, 0] and abs(west[2] - 20) < 0.3 and west[3] == 40, west
    assert abs(east[0] - 20) < 0.3 and [east[1], east[2], east[3]] == [0, 40, 40], east
    assert result["saved_statuses"] == {"confirmed": detected - 2, "added": 3}, "edits are saved to the GeoPackage"
    assert result["train_defaults"]["rasters"] == ["sample orthophoto"] and result["train_defaults"]["reviewed_only"]
    assert result["train_defaults"]["base"].startswith("Bundled")
    # The learning rate follows the base model chosen: each checkpoint may state the rate that suits it.
    assert result["train_defaults"]["learning_rate"] == pytest.approx(learning_rate_for(read_metadata(BUNDLED_MODEL)))
    assert result["learning_rate_of_a_model_stating_one"] == pytest.approx(0.004)
    assert result["training_started"] and result["epochs_plotted"] == 1
    new_model = result["new_model"]
    assert new_model and Path(new_model).exists() and new_model in result["model_list"]
    # Two reviewed places: a model learnt from each is scored on the other, beside the base model.
    assert "Retrained without each group of the corrected places in turn" in result["training_status"], result["training_status"]
    # The dock moves on to the new model unless that check scored it below its base.
    assert (result["selected_after_training"] == new_model) == ("Not better" not in result["training_status"])
    assert result["second_detection"]["model"] == new_model
    # The first detection's layer is still in the project: the new one must be told apart from it.
    assert result["second_detection"]["name"] == "sample orthophoto crowns (2)"
    evaluation = result["evaluation"]
    assert evaluation["figures"] is not None and 0.0 <= evaluation["figures"]["F1"] <= 1.0, evaluation["text"]
    assert evaluation["outcome_layer"] and set(evaluation["outcomes"]) <= {"true positive", "false positive", "missed"}
    assert result["export"] == {"chips": 2, "csv": True, "coco": True}, "a chip per reviewed area"
    for step in ("1-detected", "2-three-boxes-drawn", "3-two-deleted", "4-confirmed-and-reviewed", "5-train-dialog",
                 "6-trained", "7-detected-with-new-model", "8-evaluation"):
        assert (out / f"{step}.png").exists(), step


def test_packages_are_installed_from_the_dock_and_detection_runs_in_the_same_session(osbs_plot, tmp_path):
    """QGIS started without torch: the plugin loads, the dock installs the packages into the profile,
    and the dock detects at once; a second start finds them and asks nothing."""
    out = Path(os.environ.get("TREECROWNS_SCREENSHOTS", tmp_path)) / "installer"
    shutil.rmtree(out / "profiles", ignore_errors=True)
    result = run_desktop(REPO / "tests" / "gui" / "drive_installer.py", out, osbs_plot.image, timeout=1200, with_venv=False)
    assert "error" not in result, result.get("error")
    assert result["python_errors"] == []
    assert not result["torch_on_path_at_start"]
    # Before the install every algorithm is listed, as a stand-in that says how to install PyTorch.
    assert len(result["algorithms_before"]) == 5
    assert all(title.endswith("(needs PyTorch)") for title in result["algorithms_before"].values())
    assert result["install_dock_visible"] and "torch" in result["explanation"] and "safetensors" in result["explanation"]
    # This machine has no NVIDIA driver: the dock starts from PyTorch's CPU-only index and says why.
    assert result["index_chosen"] == CPU_ONLY_INDEX and "no NVIDIA driver" in result["index_reason"]
    assert result["install_click_s"] < 0.5, "pip runs in a background task"
    assert result["detection_dock_visible"], result["install_status"]
    assert result["algorithms_after"]["treecrowns:detect"] == "Detect tree crowns", "the real algorithms replace the stand-ins"
    assert result["torch_from"].startswith(result["packages_folder"]), "torch comes from the profile's folder"
    assert not result["triton_installed"]
    [crowns] = result["crown_layers"]
    assert crowns["features"] > 10, result["detection_status"]
    for name in ("1-packages-missing", "3-installed", "4-detected-after-install"):
        assert (out / f"{name}.png").exists(), name

    again = run_desktop(REPO / "tests" / "gui" / "drive_second_start.py", out, osbs_plot.image, with_venv=False)
    assert again["python_errors"] == [] and "error" not in again, again.get("error")
    assert "treecrowns:detect" in again["algorithms"] and not again["install_dock"] and again["detection_dock_visible"]
    shutil.rmtree(out / "profiles")  # a few GB of packages; the screenshots and pip.log stay


def test_a_crash_keeps_the_review_edits_saved_by_autosave(osbs_plot, tmp_path):
    """QGIS keeps edits in memory until they are saved: after a crash the user gets back what the
    last autosave wrote (on by default, every 5 minutes), and loses the edits made since."""
    out = Path(os.environ.get("TREECROWNS_SCREENSHOTS", tmp_path)) / "crash"
    result = run_desktop(REPO / "tests" / "gui" / "drive_crash.py", out, osbs_plot.image)
    assert "error" not in result, result.get("error")
    assert result["python_errors"] == []
    assert result["autosave_on_by_default"] and result["autosave_minutes"] == 5
    assert result["crowns_at_start"] == 61 and result["crowns_after_first_edits"] == 58
    assert not result["modified_after_autosave"] and result["still_editing_after_autosave"]
    assert result["crowns_in_qgis_at_crash"] == 56
    listed = subprocess.run(["ogrinfo", "-so", "-al", str(out / "crowns.gpkg")], capture_output=True, text=True).stdout
    counts = [int(line.split(":")[1]) for line in listed.splitlines() if line.startswith("Feature Count")]
    assert counts[0] == 58, "the autosaved deletions survive the crash; the two made after it are lost"
