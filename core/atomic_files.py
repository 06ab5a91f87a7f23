"""Writing a file so that readers see the old version or the new one, never a half-written one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[str], None], mode: int = 0o644) -> None:
    """Call ``write`` with a temporary file name beside ``path``, then move the file into place.

    A crash or an error while writing leaves ``path`` as it was and no temporary file behind.

    Raises:
        OSError: If the folder is not writable or the move fails; whatever ``write`` raises.
    """
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp_name)
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
