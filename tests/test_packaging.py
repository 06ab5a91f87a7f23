"""The plugin zip that QGIS's "Install from ZIP" accepts: plugin files only, under treecrowns/."""

import subprocess
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_zip_holds_the_plugin_and_nothing_else():
    done = subprocess.run(["bash", str(REPO / "scripts" / "build-zip.sh")], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    names = zipfile.ZipFile(REPO / "dist" / "treecrowns.zip").namelist()
    assert all(n.startswith("treecrowns/") for n in names)
    for required in ("metadata.txt", "__init__.py", "plugin.py", "core/prediction.py", "processing_provider/provider.py",
                     "ui/detection_dock.py", "resources/styles/crowns.qml", "resources/icon.svg",
                     "resources/models/treecrowns-neon-lite.safetensors", "resources/models/MODEL_CARD.md"):
        assert f"treecrowns/{required}" in names, required
    for forbidden in ("tests/", "scripts/", ".venv/", "build/", "__pycache__", ".ci/", ".git"):
        assert not any(forbidden in n for n in names), forbidden


def test_metadata_declares_what_qgis_needs():
    text = (REPO / "metadata.txt").read_text()
    for key in ("name=", "qgisMinimumVersion=3.22", "description=", "version=", "author=", "email=", "hasProcessingProvider=yes"):
        assert key in text
