"""core/ must run without QGIS or Qt: a batch job or a cluster worker has neither."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
FORBIDDEN = ("qgis", "PyQt5", "PyQt6", "PyQt", "sip")


def test_no_module_in_core_imports_qgis_or_qt():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_core_imports_in_a_process_where_qgis_cannot_be_imported(tmp_path):
    blocker = tmp_path / "qgis"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('QGIS must not be imported by core')\n")
    plugins = Path(__file__).resolve().parents[2] / "build" / "plugins"
    code = (
        "import treecrowns.core.prediction, treecrowns.core.training, treecrowns.core.evaluation, "
        "treecrowns.core.annotations, treecrowns.core.checkpoint; import sys; "
        "assert not any(m.startswith(('qgis', 'PyQt')) for m in sys.modules), sorted(sys.modules)"
    )
    env = {"PYTHONPATH": f"{tmp_path}:{plugins}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
