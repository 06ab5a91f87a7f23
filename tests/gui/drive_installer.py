"""Run inside the real QGIS desktop started without torch on its path: install the packages from the
dock, then detect in the same session. Screenshots of each step; results in result.json.

Driven by tests/gui/test_desktop.py. The install uses the package index pip is set up for.
"""

import sys
import time
from pathlib import Path

import qgis.utils
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget, QToolBar

from desktop_harness import OUT, RASTER, finish, guarded, result, save

INSTALL_TIMEOUT_S = 900


def treecrowns_algorithms() -> dict:
    """id -> title of every treecrowns algorithm QGIS Processing lists now."""
    return {a.id(): a.displayName() for a in QgsApplication.processingRegistry().algorithms()
            if a.id().startswith("treecrowns:")}


def start():
    iface = qgis.utils.iface
    result["torch_on_path_at_start"] = any((Path(p) / "torch").is_dir() for p in sys.path if p)
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.loadPlugin("treecrowns"), "plugin could not be loaded"
    assert qgis.utils.startPlugin("treecrowns"), "plugin could not be started without torch"
    plugin = qgis.utils.plugins["treecrowns"]
    result["algorithms_before"] = treecrowns_algorithms()
    raster = QgsRasterLayer(RASTER, "sample orthophoto")
    QgsProject.instance().addMapLayer(raster)
    iface.mapCanvas().setExtent(raster.extent())
    [button] = [a for tb in iface.mainWindow().findChildren(QToolBar) for a in tb.actions()
                if a.objectName() == "TreecrownsShowDock"]
    button.trigger()
    dock = iface.mainWindow().findChild(QDockWidget, "TreecrownsInstallDock")
    result["install_dock_visible"] = bool(dock and dock.isVisible())
    result["explanation"] = dock.explanation.text()
    result["index_chosen"] = dock.index_edit.text()
    result["index_reason"] = dock.index_reason.text()
    result["packages_folder"] = str(plugin.folder)
    save("1-packages-missing")
    # This machine reaches no package index but the one pip is set up for (not PyTorch's CPU-only
    # one): cleared, as a user behind such a firewall would.
    dock.index_edit.setText("")
    started = time.monotonic()
    dock.install_button.click()
    result["install_click_s"] = time.monotonic() - started
    pip_lines = []
    dock.task.logLine.connect(pip_lines.append)  # the dock is replaced when the install succeeds
    dock.log_box.setCollapsed(False)
    shots = {"taken": False}

    def wait_for_install():
        if plugin.dock is dock and dock.task is not None and time.monotonic() - started < INSTALL_TIMEOUT_S:
            if not shots["taken"] and time.monotonic() - started > 20:
                save("2-installing")
                shots["taken"] = True
            QTimer.singleShot(500, guarded(wait_for_install))
            return
        result["install_s"] = round(time.monotonic() - started)
        (OUT / "pip.log").write_text("\n".join(pip_lines))
        result["pip_command"] = pip_lines[0] if pip_lines else None
        result["install_status"] = dock.status.text() if plugin.dock is dock else "replaced by the detection dock"
        QTimer.singleShot(1000, guarded(after_install))

    def after_install():
        detection = iface.mainWindow().findChild(QDockWidget, "TreecrownsDock")
        result["detection_dock_visible"] = bool(detection and detection.isVisible())
        result["algorithms_after"] = treecrowns_algorithms()
        folder = Path(plugin.folder)
        result["triton_installed"] = any(folder.glob("triton*"))
        import torch

        result["torch_from"] = torch.__file__
        save("3-installed")
        if detection is None:
            finish("the detection dock did not replace the installer")
            return
        detection.raster_combo.setLayer(raster)
        detection.output_widget.setFilePath(str(OUT / "crowns.gpkg"))
        detection.detect_button.click()
        detect_started = time.monotonic()

        def wait_for_crowns():
            if detection.task is not None and time.monotonic() - detect_started < 240:
                QTimer.singleShot(200, guarded(wait_for_crowns))
                return
            layers = [layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsVectorLayer)]
            result["crown_layers"] = [{"name": layer.name(), "features": layer.featureCount()} for layer in layers]
            result["detection_status"] = detection.status.text()
            iface.mapCanvas().refreshAllLayers()
            QTimer.singleShot(1500, guarded(lambda: (save("4-detected-after-install"), finish())))

        QTimer.singleShot(200, guarded(wait_for_crowns))

    QTimer.singleShot(500, guarded(wait_for_install))


QTimer.singleShot(1000, guarded(start))
