"""Running several trainings of model/train_bundled_model.py side by side, each on one CPU thread.

Used by the scripts that train one checkpoint per held-out site or fold. A training stopped
part-way goes on from its last finished epoch when run again, and its log keeps the earlier lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from treecrowns.core.training_state import history_path_beside, state_path_beside

TRAINER = Path(__file__).resolve().parent / "train_bundled_model.py"


@dataclass(frozen=True)
class Run:
    """One training: the checkpoint it writes, its log, train_bundled_model.py's options, and a name for messages."""

    checkpoint: Path
    log: Path
    options: list[str]
    name: str


def finished(checkpoint: Path) -> bool:
    """Whether that training ran to the end: a stopped one leaves its best epoch so far and its state, but no history."""
    return checkpoint.exists() and history_path_beside(checkpoint).exists()


def train_unfinished(runs: list[Run], jobs: int) -> None:
    """Run every training not finished yet, ``jobs`` at a time with one thread each.

    Raises:
        SystemExit: Naming the trainings that failed and their logs.
    """
    missing = [run for run in runs if not finished(run.checkpoint)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running: list[subprocess.Popen] = []
    for run in missing:
        while len(running) >= jobs:
            running.pop(0).wait()
        run.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        going_on = state_path_beside(run.checkpoint).exists()
        log = open(run.log, "a" if going_on else "w")
        print(f"training {run.name} (log: {run.log})", flush=True)
        command = [sys.executable, str(TRAINER), *run.options, "--output", str(run.checkpoint)]
        running.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
    for process in running:
        process.wait()
    failed = [f"{run.name} (see {run.log})" for run in missing if not finished(run.checkpoint)]
    if failed:
        raise SystemExit(f"training failed: {', '.join(failed)}")
