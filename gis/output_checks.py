"""Output files: whether one can be written, asked before any work is done, and removing a half-written one."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import QgsProject


def output_problem(path: str, project: QgsProject | None = None) -> str | None:
    """What stops ``path`` from being written, in words that say what to do; None when nothing does.

    Memory and temporary destinations need no check. A file open as a layer of ``project`` would
    be broken by writing over it.
    """
    target = file_destination(path)
    if target is None:
        return None
    folder = target.parent
    if not folder.is_dir():
        return f"the output folder {folder} does not exist: create it or choose another output"
    if not os.access(folder, os.W_OK) or _on_read_only_filesystem(folder):
        return f"the output folder {folder} is read-only: choose a folder you can write to"
    if target.exists() and project is not None:
        for layer in project.mapLayers().values():
            if Path(layer.source().split("|")[0]) == target:
                return (f"{target.name} is open as the layer '{layer.name()}': writing over it would break that layer; "
                        "choose another file name, or remove the layer from the project first")
    return None


def file_destination(path: str) -> Path | None:
    """The file an output destination names; None for memory and temporary layers and URLs."""
    if not path or path.startswith(("memory:", "TEMPORARY_OUTPUT")) or "://" in path:
        return None
    return Path(path.split("|")[0])


def remove_output_file(destination: str) -> None:
    """Remove a file output and its SQLite side files, so that a failed run leaves nothing behind."""
    path = file_destination(destination)
    if path is None:
        return
    for leftover in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal"),
                     path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def _on_read_only_filesystem(folder: Path) -> bool:
    """Whether ``folder`` lies on a file system mounted read-only (where even root cannot write)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
