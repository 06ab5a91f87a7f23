"""Installing the engine's packages into the profile: what is installed, what never is, and failures.

These run pip for real, offline, on small wheels the test writes: an "engine" that needs a
"helper" and triton, as torch's Linux wheels do.
"""

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from treecrowns.gis import dependencies
from treecrowns.gis.dependencies import (
    CPU_ONLY_INDEX,
    OPTIONAL,
    REQUIRED,
    InstallCancelled,
    InstallError,
    default_index,
    has_nvidia_driver,
    install,
    install_command,
    missing_packages_message,
    packages_folder,
    use_packages_folder,
)

REPO = Path(__file__).resolve().parents[2]


def write_wheel(folder: Path, name: str, requires: tuple[str, ...] = (), version: str = "1.0") -> None:
    """A pure-Python wheel of one module ``name`` that says ``installed = True``."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "installed = True\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: treecrowns-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


@pytest.fixture
def wheelhouse(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    write_wheel(folder, "tcdemo_engine", ("tcdemo_helper", "triton"))
    write_wheel(folder, "tcdemo_helper")
    write_wheel(folder, "triton")
    return folder


def test_the_engine_and_what_it_needs_are_installed_but_never_triton(wheelhouse, tmp_path):
    folder = packages_folder(tmp_path / "profile")
    steps, lines = [], []
    installed = install(folder, ["tcdemo_engine==1.0"], str(wheelhouse), log=lines.append,
                        progress=lambda fraction, message: steps.append(fraction))
    assert sorted(installed) == ["tcdemo_engine==1.0", "tcdemo_helper==1.0"]
    assert (folder / "tcdemo_engine").is_dir() and (folder / "tcdemo_helper").is_dir()
    assert not list(folder.glob("triton*")), "triton crashes the QGIS desktop: it must never be installed"
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)
    assert any("pip" in line for line in lines), "the pip log reaches the panel"
    assert not [p for p in folder.parent.iterdir() if p != folder], "no staging folder is left behind"
    try:
        assert use_packages_folder(folder) and sys.path[0] == str(folder)
        assert importlib.import_module("tcdemo_engine").installed, "importable at once, without a restart"
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("tcdemo_engine", None)


def test_a_registry_that_cannot_be_reached_is_said_plainly_and_nothing_is_written(tmp_path):
    folder = packages_folder(tmp_path / "profile")
    with pytest.raises(InstallError, match="cannot be reached: check the internet connection"):
        install(folder, ["tcdemo_engine==1.0"], "http://127.0.0.1:9/simple")
    assert not folder.exists()


def test_versions_the_index_lacks_are_explained(wheelhouse, tmp_path):
    with pytest.raises(InstallError, match="does not have these versions"):
        install(packages_folder(tmp_path / "profile"), ["tcdemo_engine==9.9"], str(wheelhouse))


def test_cancel_stops_pip_and_leaves_the_folder_as_it_was(wheelhouse, tmp_path):
    folder = packages_folder(tmp_path / "profile")
    folder.mkdir(parents=True)
    (folder / "kept.txt").write_text("an earlier install")
    with pytest.raises(InstallCancelled):
        install(folder, ["tcdemo_engine==1.0"], str(wheelhouse), should_stop=lambda: True)
    assert [p.name for p in folder.iterdir()] == ["kept.txt"]


def test_the_installer_pins_what_requirements_txt_pins():
    pinned = {line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert set(REQUIRED.values()) | set(OPTIONAL.values()) == pinned


def test_pip_runs_under_the_python_qgis_runs_even_when_another_comes_first_on_path(tmp_path, monkeypatch):
    """QGIS on Linux sets sys.executable to the first python3 on PATH (pyenv, conda...): it is checked, not trusted."""
    from treecrowns.gis.python_for_pip import python_executable

    impostor = tmp_path / "python3"
    impostor.write_text("#!/bin/sh\necho /opt/other; echo 3.99\n")
    impostor.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(impostor))
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    found = python_executable()
    assert found is not None and found != impostor
    said = subprocess.run([str(found), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True).stdout
    assert Path(said.strip()).resolve() == Path(sys.prefix).resolve()


def test_an_nvidia_driver_is_found_by_its_proc_folder_or_by_nvidia_smi(tmp_path):
    nowhere = tmp_path / "no-driver"
    assert not has_nvidia_driver(nowhere, find_program=lambda name: None)
    assert has_nvidia_driver(nowhere, find_program=lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    (tmp_path / "nvidia").mkdir()
    assert has_nvidia_driver(tmp_path / "nvidia", find_program=lambda name: None)


@pytest.mark.parametrize("driver, expected", [(False, CPU_ONLY_INDEX), (True, "")])
def test_on_linux_the_installer_starts_from_the_cpu_only_index_unless_there_is_an_nvidia_driver(
    monkeypatch, driver, expected
):
    monkeypatch.setattr(dependencies, "has_nvidia_driver", lambda: driver)
    choice = default_index("Linux")
    assert choice.url == expected
    assert ("no NVIDIA driver" if not driver else "NVIDIA driver was found") in choice.reason
    assert CPU_ONLY_INDEX in " ".join(install_command(Path("/p"), Path("/usr/bin/python3"), choice.url)) or driver


def test_elsewhere_the_installer_starts_from_the_index_pip_is_set_up_for():
    for system in ("Windows", "Darwin"):
        assert default_index(system, nvidia=False).url == ""


def test_the_message_for_missing_packages_names_them_their_pins_and_the_command(tmp_path):
    folder = packages_folder(tmp_path / "profile")
    message = missing_packages_message(["torch", "torchvision"], folder, Path("/usr/bin/python3"),
                                       default_index("Linux", nvidia=False))
    assert "torch==2.14.1" in message and "torchvision==0.29.1" in message and "safetensors" not in message
    script = Path(dependencies.__file__).absolute().parents[1] / "install_packages.py"
    assert f"/usr/bin/python3 {script} {folder} --index-url {CPU_ONLY_INDEX}" in message
    assert "dock" in message and "no NVIDIA driver" in message


def test_the_command_in_the_message_installs_the_pinned_packages_for_qgis_python_but_never_triton(tmp_path):
    """Run as a user would paste it, with QGIS's Python (which has no torch), offline from pinned stand-in wheels."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for requirement, requires in (("torch==2.14.1", ("triton",)), ("torchvision==0.29.1", ("torch",)),
                                  ("safetensors==0.8.0", ())):
        name, version = requirement.split("==")
        write_wheel(wheels, name, requires, version)
    write_wheel(wheels, "triton", version="3.8.0")  # the version torch 2.14.1 asks for
    folder = packages_folder(tmp_path / "profile")
    command = install_command(folder, Path("/usr/bin/python3"), str(wheels))
    # QGIS's Python as a user's shell has it: without the test environment's packages on PYTHONPATH.
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=environment)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Installed 3 packages" in done.stdout
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".dist-info")) == [
        "safetensors", "torch", "torchvision"]
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = subprocess.run([*command[:3], "--index-url", str(empty)], capture_output=True, text=True, timeout=300,
                            env=environment)
    assert failed.returncode == 1 and failed.stderr.startswith("Not installed: ")
    assert "Traceback" not in failed.stderr
