"""Static checks: no unused imports or names, no undefined names, no syntax errors anywhere."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_no_errors():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F,E9", str(REPO)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
