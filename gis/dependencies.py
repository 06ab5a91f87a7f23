"""The Python packages the engine needs, and installing them into a folder of the user's QGIS profile.

QGIS's own Python is never changed and no admin rights are needed: pip installs into
``<profile>/python/treecrowns-packages/py3XX``, which the plugin puts at the front of
``sys.path`` when it loads. Two steps: pip first resolves, without installing, what QGIS's
Python lacks for the pinned versions; then everything in that list except triton is installed
with ``--no-deps`` into a staging folder that replaces the packages folder only when pip
succeeded. So a failed or cancelled install leaves nothing half-written, packages QGIS already
has (numpy, which rasterio and QGIS are built against) are never shadowed, and triton, which
torch's Linux wheels pull in but only ``torch.compile`` on a GPU uses, never lands (its LLVM
crashes the QGIS desktop on Mesa drivers).

Which package index: on Linux, PyTorch's default wheels bring NVIDIA's CUDA libraries (several
GB), which only a machine with an NVIDIA driver can use; without one the installer starts from
PyTorch's CPU-only index. The user can still name another index.

The same install runs from a shell (``install_packages.py`` in the plugin's folder), for a server
or batch job whose QGIS desktop never opened the dock; ``missing_packages_message`` gives the
exact command.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import queue
import re
import shutil
import subprocess  # nosec B404 - runs pip with fixed arguments
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .python_for_pip import pip_command, python_executable

# module name -> pinned requirement; the same pins as requirements.txt (a test keeps them equal).
REQUIRED = {"torch": "torch==2.14.1", "torchvision": "torchvision==0.29.1", "safetensors": "safetensors==0.8.0"}
# Needed only to detect on a Dask cluster (CLUSTER); core.cluster says how to install it when it is missing.
OPTIONAL = {"distributed": "dask[distributed]==2026.8.0"}
NEVER_INSTALLED = frozenset({"triton"})
# PyTorch's own index of CPU-only wheels: on Linux, torch without NVIDIA's CUDA libraries.
CPU_ONLY_INDEX = "https://download.pytorch.org/whl/cpu"
NVIDIA_DRIVER_FOLDER = Path("/proc/driver/nvidia")
_UNREACHABLE = re.compile(
    r"Failed to establish a new connection|Name or service not known|Temporary failure in name resolution|"
    r"Could not fetch URL|ConnectTimeout|ReadTimeout|Network is unreachable|No such file or directory: '.*simple",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"No matching distribution found|Could not find a version that satisfies", re.IGNORECASE)


class InstallError(Exception):
    """Installing the packages failed; the message says why and what to do."""


class InstallCancelled(InstallError):
    """The user stopped the install; nothing was written."""


def packages_folder(profile_folder: str | Path) -> Path:
    """Where the packages of this Python version go inside a QGIS profile folder."""
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(profile_folder) / "python" / "treecrowns-packages" / version


def use_packages_folder(folder: Path) -> bool:
    """Put ``folder`` first on ``sys.path`` (when it exists) so that its packages are found without a restart."""
    if not folder.is_dir():
        return False
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    return True


def missing_packages() -> list[str]:
    """The required packages QGIS's Python cannot import, found without importing them."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def has_nvidia_driver(driver_folder: Path = NVIDIA_DRIVER_FOLDER, find_program=shutil.which) -> bool:
    """Whether an NVIDIA driver is loaded (its /proc folder) or installed (``nvidia-smi`` on PATH)."""
    return driver_folder.exists() or find_program("nvidia-smi") is not None


@dataclass(frozen=True)
class IndexChoice:
    """The package index the installer starts from ("" is the one pip is set up for), and why, in words."""

    url: str
    reason: str


def default_index(system: str | None = None, nvidia: bool | None = None) -> IndexChoice:
    """PyTorch's CPU-only index on Linux without an NVIDIA driver; else the index pip is set up for."""
    system = platform.system() if system is None else system
    if system != "Linux":
        return IndexChoice("", f"the index pip is set up for: PyTorch's standard packages for {system}")
    if nvidia if nvidia is not None else has_nvidia_driver():
        return IndexChoice("", "an NVIDIA driver was found, so the index pip is set up for: PyTorch with CUDA, "
                           "which uses the GPU (several GB)")
    return IndexChoice(CPU_ONLY_INDEX, "no NVIDIA driver was found (no /proc/driver/nvidia, no nvidia-smi), so "
                       "PyTorch's CPU-only packages, without the CUDA libraries (over 2 GB) this machine cannot use")


def install_command(folder: Path, python: Path | None, index_url: str) -> list[str]:
    """The shell command that installs the engine's packages into ``folder`` as the dock's Install does."""
    script = Path(__file__).absolute().parents[1] / "install_packages.py"
    command = [str(python or "python3"), str(script), str(folder)]
    return command + ["--index-url", index_url] if index_url else command


def missing_packages_message(missing: list[str], folder: Path, python: Path | None = None,
                             index: IndexChoice | None = None) -> str:
    """What is missing, the pinned versions, and the two ways to install them: the dock, or one command."""
    index = index or default_index()
    pins = " ".join(REQUIRED[name] for name in missing)
    command = " ".join(f'"{part}"' if " " in part else part for part in install_command(folder, python, index.url))
    return (
        f"Tree crowns needs PyTorch, and QGIS's Python lacks {', '.join(missing)}. Install {pins} into {folder}, "
        "the folder the plugin reads: in the QGIS desktop the Tree crowns button opens a dock that does it with "
        f"one click, or from a shell run\n  {command}\n(package index: {index.reason}). Nothing in QGIS itself "
        "is changed."
    )


def index_options(index_url: str) -> list[str]:
    """pip options for a package index other than the one pip is set up for ("" keeps pip's own)."""
    index_url = index_url.strip()
    if not index_url:
        return []
    if "://" not in index_url and Path(index_url).is_dir():
        return ["--no-index", "--find-links", index_url]
    return ["--index-url", index_url]


LogLine = Callable[[str], None]
Progress = Callable[[float, str], None]
StopCheck = Callable[[], bool]


def install(
    folder: Path,
    requirements: list[str] | None = None,
    index_url: str = "",
    log: LogLine | None = None,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
    python: Path | None = None,
) -> list[str]:
    """Install ``requirements`` (default: the pinned engine packages) and what they lack into ``folder``.

    Returns:
        The ``name==version`` of every package installed.

    Raises:
        InstallError: If pip cannot be run, the index cannot be reached, or pip fails.
        InstallCancelled: If ``should_stop`` asked to stop; ``folder`` is then as it was.
    """
    requirements = list(REQUIRED.values()) if requirements is None else requirements
    python = python or python_executable()
    if python is None:
        raise InstallError(
            "cannot find the Python interpreter QGIS runs, to run pip with it; install "
            f"{' '.join(requirements)} into {folder} by hand (pip install --target)"
        )
    log = log or (lambda line: None)
    progress = progress or (lambda fraction, message: None)
    extra = index_options(index_url)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="treecrowns-install-", dir=folder.parent) as scratch:
        report = Path(scratch) / "report.json"
        progress(0.0, "finding what QGIS's Python lacks")
        _run_pip(python, ["install", "--dry-run", "--quiet", "--report", str(report), *extra, *requirements], log, should_stop)
        wanted = [
            f"{item['metadata']['name']}=={item['metadata']['version']}"
            for item in json.loads(report.read_text())["install"]
            if item["metadata"]["name"].lower() not in NEVER_INSTALLED
        ]
        if not wanted:
            progress(1.0, "nothing to install")
            return []
        staging = Path(scratch) / "packages"
        progress(0.05, f"installing {len(wanted)} packages")
        names = [name.split("==")[0].lower() for name in wanted]
        steps = [0]

        def on_line(line: str) -> None:
            log(line)
            if line.startswith(("Collecting", "Processing", "Installing collected")) and any(n in line.lower() for n in names):
                steps[0] += 1
                progress(min(0.95, 0.05 + 0.9 * steps[0] / (len(wanted) + 1)), line.strip()[:80])

        _run_pip(python, ["install", "--no-deps", "--target", str(staging), "--no-warn-script-location",
                          "--progress-bar", "off", *extra, *wanted], on_line, should_stop)
        progress(0.97, "moving the packages into place")
        if folder.exists():
            shutil.rmtree(folder)
        shutil.move(str(staging), str(folder))
    progress(1.0, f"installed {len(wanted)} packages")
    return wanted


def _run_pip(python: Path, arguments: list[str], log: LogLine, should_stop: StopCheck | None) -> None:
    """Run pip, passing each output line to ``log``; stop it within a fraction of a second when asked."""
    command = pip_command(python, *arguments)
    log("$ " + " ".join(command))
    try:
        # A fixed pip command run without a shell: nothing of the user's reaches a shell.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # nosec B603
    except OSError as exc:
        raise InstallError(f"cannot run pip with {python}: {exc}") from exc
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    said: list[str] = []
    with process:
        while True:
            if should_stop is not None and should_stop():
                process.terminate()
                raise InstallCancelled("the install was cancelled; nothing was installed")
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            said.append(line)
            log(line)
    if process.returncode != 0:
        raise InstallError(_explain(said))


def _explain(lines: list[str]) -> str:
    """A message for a failed pip run: the likely cause and what to do, then pip's last words."""
    text = "\n".join(lines)
    last = "\n".join(line for line in lines[-6:] if line.strip())
    if _UNREACHABLE.search(text):
        return ("the package index cannot be reached: check the internet connection (or proxy), or set another "
                f"index in the installer's settings.\npip said:\n{last}")
    if _NOT_FOUND.search(text):
        return ("the package index does not have these versions for this Python and system; set another index "
                f"(for example PyTorch's CPU-only one) in the installer's settings.\npip said:\n{last}")
    return f"pip failed; its log is in the installer's panel.\npip said:\n{last}"


def main(argv: list[str] | None = None) -> int:
    """``install_packages.py FOLDER [--index-url URL]``: the dock's install, from a shell; pip's log on standard output."""
    choice = default_index()
    parser = argparse.ArgumentParser(
        prog="install_packages.py",
        description="Install the packages Tree crowns needs (" + ", ".join(REQUIRED.values()) + ") into a folder "
        "that the plugin reads, without changing QGIS's Python. Run it with QGIS's own Python.",
    )
    parser.add_argument("folder", type=Path, help="<QGIS profile>/python/treecrowns-packages/pyXY")
    parser.add_argument("--index-url", default=choice.url,
                        help=f"package index, or a folder of wheels (default: {choice.url or 'the one pip is set up for'}: "
                        f"{choice.reason}); \"\" for the one pip is set up for")
    args = parser.parse_args(argv)
    print(f"Package index: {args.index_url or 'the one pip is set up for'}", flush=True)
    try:
        installed = install(args.folder, index_url=args.index_url, log=print, python=Path(sys.executable))
    except InstallError as exc:
        print(f"Not installed: {exc}", file=sys.stderr)
        return 1
    print(f"Installed {len(installed)} packages into {args.folder}")
    return 0
