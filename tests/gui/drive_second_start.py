"""Run inside the real QGIS desktop after drive_installer.py, same profile, torch still not on QGIS's own
path: the plugin finds the installed packages by itself, registers its algorithms and opens the
detection dock without asking anything. Driven by tests/gui/test_desktop.py.
"""

import qgis.utils
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget, QToolBar

from desktop_harness import finish, guarded, result, save


def start():
    iface = qgis.utils.iface
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.loadPlugin("treecrowns") and qgis.utils.startPlugin("treecrowns")
    result["algorithms"] = [a.id() for a in QgsApplication.processingRegistry().algorithms() if a.id().startswith("treecrowns:")]
    [button] = [a for tb in iface.mainWindow().findChildren(QToolBar) for a in tb.actions() if a.objectName() == "TreecrownsShowDock"]
    button.trigger()
    result["install_dock"] = iface.mainWindow().findChild(QDockWidget, "TreecrownsInstallDock") is not None
    detection = iface.mainWindow().findChild(QDockWidget, "TreecrownsDock")
    result["detection_dock_visible"] = bool(detection and detection.isVisible())
    save("5-second-start")
    finish()


QTimer.singleShot(1000, guarded(start))
