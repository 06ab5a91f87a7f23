"""Paths of the files the plugin ships in resources/."""

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
BUNDLED_MODEL = RESOURCES / "models" / "treecrowns-neon-lite.safetensors"
ICON = RESOURCES / "icon.svg"
CROWNS_STYLE = RESOURCES / "styles" / "crowns.qml"
EVALUATION_STYLE = RESOURCES / "styles" / "evaluation.qml"
REVIEWED_AREAS_STYLE = RESOURCES / "styles" / "reviewed_areas.qml"


def model_path_or_bundled(path: str | None) -> Path:
    """The user's checkpoint, or the bundled one when none was chosen."""
    return Path(path) if path else BUNDLED_MODEL
