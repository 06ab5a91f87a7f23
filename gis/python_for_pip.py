"""How to run pip for the Python that QGIS runs: the one part of installing that differs by platform.

Inside QGIS, ``sys.executable`` is often QGIS itself or another Python found on PATH, so every
candidate is asked for its version and prefix. Where each installer puts the interpreter:

* Linux (distribution packages): the system ``python3`` of the same version. Tested (Debian 12).
* Windows (OSGeo4W and the standalone installer): ``python.exe`` in ``sys.exec_prefix``
  (``<QGIS>/apps/Python3x``). Not tested.
* macOS (the official QGIS.app): ``Contents/MacOS/bin/python3`` beside the QGIS binary. Not tested.

When none is found the installer says so and names the command to run by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def _is_this_python(path: Path) -> bool:
    """Whether ``path`` runs the very Python QGIS runs: same version and same installation prefix.

    ``sys.executable`` alone cannot be trusted: QGIS on Linux sets it to the first ``python3`` on
    PATH, which may be another installation (pyenv, conda) with other packages.
    """
    if not (path.is_file() and os.access(path, os.X_OK) and path.name.lower().startswith("python")):
        return False
    probe = "import sys; print(sys.prefix); print('%d.%d' % sys.version_info[:2])"
    try:
        # A fixed probe run without a shell on a candidate interpreter.
        done = subprocess.run([str(path), "-c", probe], capture_output=True, text=True, timeout=30)  # nosec B603
    except (OSError, subprocess.TimeoutExpired):
        return False
    expected = [str(Path(sys.prefix).resolve()), f"{sys.version_info.major}.{sys.version_info.minor}"]
    said = done.stdout.split()
    return done.returncode == 0 and len(said) == 2 and [str(Path(said[0]).resolve()), said[1]] == expected


def python_executable() -> Path | None:
    """The interpreter of QGIS's own Python, or None when it cannot be found."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    running = Path(sys.executable) if sys.executable else None
    if sys.platform == "win32":
        candidates = [Path(sys.exec_prefix) / "python.exe", Path(sys.exec_prefix) / "python3.exe"]
    elif sys.platform == "darwin":
        folder = running.parent if running is not None else Path(sys.exec_prefix)
        candidates = [folder / "bin" / "python3", Path(sys.exec_prefix) / "bin" / f"python{version}"]
    else:
        candidates = [Path(sys.exec_prefix) / "bin" / f"python{version}", Path(sys.exec_prefix) / "bin" / "python3"]
    on_path = [shutil.which(f"python{version}"), shutil.which("python3")]
    candidates += [*([running] if running else []), *(Path(p) for p in on_path if p)]
    return next((path for path in candidates if _is_this_python(path)), None)


def pip_command(python: Path, *arguments: str) -> list[str]:
    """``python -m pip ...`` with the options every installer call shares."""
    return [str(python), "-m", "pip", *arguments, "--disable-pip-version-check", "--no-input"]
