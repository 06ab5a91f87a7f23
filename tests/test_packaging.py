"""The plugin zip that QGIS's "Install from ZIP" and the QGIS plugin repository accept."""

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ZIP = REPO / "dist" / "treecrowns.zip"


@pytest.fixture(scope="module")
def built_zip() -> tuple[list[str], str]:
    done = subprocess.run(["bash", str(REPO / "scripts" / "build-zip.sh")], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return zipfile.ZipFile(ZIP).namelist(), done.stdout


def test_zip_holds_the_plugin_its_licence_and_model_and_nothing_else(built_zip):
    names, printed = built_zip
    assert "MB" in printed, "the build says how large the zip is"
    assert all(n.startswith("treecrowns/") for n in names)
    for required in ("metadata.txt", "LICENSE", "__init__.py", "plugin.py", "core/prediction.py",
                     "processing_provider/provider.py", "ui/detection_dock.py", "resources/styles/crowns.qml",
                     "resources/icon.svg", "resources/models/treecrowns-neon-lite.safetensors",
                     "resources/models/MODEL_CARD.md"):
        assert f"treecrowns/{required}" in names, required
    for forbidden in ("tests/", "scripts/", "treecrowns/model/", ".venv/", "build/", "dist/", "output/", "__pycache__",
                      ".pyc", ".ci/", ".git", ".training-state"):
        assert not any(forbidden in n for n in names), forbidden


def test_metadata_has_what_the_plugin_repository_asks_for(built_zip):
    metadata = configparser.ConfigParser()
    metadata.read_string(zipfile.ZipFile(ZIP).read("treecrowns/metadata.txt").decode())
    general = metadata["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "tracker",
                "repository", "homepage", "changelog", "tags", "icon", "license"):
        assert general.get(key, "").strip(), f"metadata.txt lacks {key}"
    assert general["qgisMinimumVersion"] == "3.22" and general["hasProcessingProvider"] == "yes"
    assert general["changelog"].split()[0] == general["version"], "the changelog starts with this version"
    assert f"treecrowns/{general['icon']}" in built_zip[0]


def test_bandit_finds_no_medium_or_high_risk_in_the_packaged_code(built_zip, tmp_path):
    """Each accepted finding is justified where it is, with a '# nosec' comment that says why."""
    zipfile.ZipFile(ZIP).extractall(tmp_path)
    done = subprocess.run([sys.executable, "-m", "bandit", "-r", str(tmp_path / "treecrowns"), "-ll", "-q"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
