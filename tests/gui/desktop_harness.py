"""What every script driving the real QGIS desktop needs: results, screenshots, errors, quitting.

A driver runs inside QGIS (``qgis --code``) and imports this module; tests/gui/test_desktop.py
puts this folder on PYTHONPATH. Results go to ``result.json`` in $TREECROWNS_GUI_OUT.
"""

import json
import os
import time
import traceback
from pathlib import Path

import qgis.utils
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication

OUT = Path(os.environ["TREECROWNS_GUI_OUT"])
RASTER = os.environ["TREECROWNS_GUI_RASTER"]
result: dict = {"steps": [], "python_errors": []}
# Layers a previous run left in OUT would make the dock ask (modally) whether to replace them.
for leftover in OUT.glob("*.gpkg"):
    leftover.unlink()
# When the heartbeat started, each time the event loop ran it, and when it stopped (see start_heartbeat).
ticks: list[float] = []


def record_exception(exc_type, value, tb, *args, **kwargs):
    """QGIS would open a modal dialog for a Python error and the run would hang: record it instead."""
    result["python_errors"].append("".join(traceback.format_exception(exc_type, value, tb)))


qgis.utils.showException = record_exception


def save(name: str, widget=None) -> None:
    """Screenshot of ``widget`` (the main window by default) as NAME.png, once the map shows the latest edits."""
    if widget is None:
        canvas = qgis.utils.iface.mapCanvas()
        canvas.refresh()
        canvas.waitWhileRendering()
    (widget or qgis.utils.iface.mainWindow()).grab().save(str(OUT / f"{name}.png"))
    result["steps"].append(name)


def start_heartbeat() -> QTimer:
    """A 50 ms timer whose ticks show whether the event loop kept running (QGIS never froze).

    The start and stop times are kept with the ticks, so the longest gap also covers a freeze
    right after the start or right before the stop, however short the watched work is.
    """
    ticks.append(time.monotonic())
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: ticks.append(time.monotonic()))
    heartbeat.start(50)
    return heartbeat


def stop_heartbeat(heartbeat: QTimer) -> None:
    heartbeat.stop()
    ticks.append(time.monotonic())


def finish(error: str | None = None) -> None:
    """Write result.json and quit QGIS."""
    if error:
        result["error"] = error
    if ticks:
        result["max_event_loop_gap_s"] = max((b - a for a, b in zip(ticks, ticks[1:])), default=None)
        result["event_loop_ticks"] = len(ticks) - 2  # without the start and stop times
        result["event_loop_watched_s"] = ticks[-1] - ticks[0]
    (OUT / "result.json").write_text(json.dumps(result, indent=2, default=str))
    QApplication.instance().exit(0)


def guarded(step):
    """``step`` for a QTimer: an exception ends the run with its traceback instead of hanging it."""

    def run():
        try:
            step()
        except Exception:
            finish(traceback.format_exc())

    return run
