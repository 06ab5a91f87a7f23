"""Plugin glue: the toolbar button and menu entry, the dock, and the Processing provider.

The engine needs torch, torchvision and safetensors. When QGIS's Python lacks them the plugin
still loads: the button opens a dock that installs them into the user's profile, and the
Processing algorithms are stand-ins that say how to install them; once the packages import, the
detection dock and the real algorithms take their place, without a restart.
"""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .gis.dependencies import missing_packages, missing_packages_message, packages_folder, use_packages_folder
from .gis.python_for_pip import python_executable
from .gis.resources import ICON

MENU = "&Tree crowns"


class TreecrownsPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None
        self.action: QAction | None = None
        self.dock = None
        self.folder = packages_folder(QgsApplication.qgisSettingsDirPath())
        # Packages installed by an earlier session: found before anything imports torch.
        use_packages_folder(self.folder)

    def initProcessing(self) -> None:  # noqa: N802 - QGIS hook
        """Register the algorithms; while packages are missing, stand-ins that say how to install them."""
        missing = missing_packages()
        message = missing_packages_message(missing, self.folder, python_executable()) if missing else None
        if missing:
            QgsMessageLog.logMessage(message, "Tree crowns", Qgis.Warning)
        if self.provider is None:
            from .processing_provider.provider import TreecrownsProvider

            self.provider = TreecrownsProvider(message)
            QgsApplication.processingRegistry().addProvider(self.provider)
        elif self.provider.missing_message != message:
            self.provider.missing_message = message
            self.provider.refreshAlgorithms()

    def initGui(self) -> None:  # noqa: N802 - QGIS hook
        self.initProcessing()
        self.action = QAction(QIcon(str(ICON)), "Tree crowns", self.iface.mainWindow())
        self.action.setObjectName("TreecrownsShowDock")
        self.action.setCheckable(True)
        self.action.toggled.connect(self.show_dock)
        self.iface.addPluginToMenu(MENU, self.action)
        self.iface.addToolBarIcon(self.action)

    def show_dock(self, visible: bool = True) -> None:
        """Create the dock on first use: the detection dock (it imports torch), or the installer."""
        if self.dock is None:
            if not visible:
                return
            self._add_dock(self._new_dock())
        self.dock.setVisible(visible)

    def _new_dock(self):
        missing = missing_packages()
        if missing:
            from .ui.install_dock import InstallDock

            return InstallDock(missing, self.folder, self._packages_installed, self.iface.mainWindow())
        from .ui.detection_dock import DetectionDock

        return DetectionDock(self.iface, self.iface.mainWindow())

    def _add_dock(self, dock) -> None:
        self.dock = dock
        self.iface.addDockWidget(Qt.RightDockWidgetArea, dock)
        dock.visibilityChanged.connect(self._sync_action)

    def _packages_installed(self) -> None:
        """Swap the installer for the detection dock and register the algorithms, in this session."""
        use_packages_folder(self.folder)
        still_missing = missing_packages()
        if still_missing:
            self.dock.status.setText(f"Installed, but {', '.join(still_missing)} still cannot be found: restart QGIS.")
            return
        self.initProcessing()
        self._remove_dock()
        self._add_dock(self._new_dock())
        self.dock.setVisible(True)
        self.iface.messageBar().pushMessage("Tree crowns", "Packages installed: detection is ready.", Qgis.Success, 5)

    def _sync_action(self, visible: bool) -> None:
        if self.action is not None and self.action.isChecked() != visible:
            self.action.setChecked(visible)

    def _remove_dock(self) -> None:
        if self.dock is None:
            return
        if getattr(self.dock, "task", None) is not None:
            self.dock.task.cancel()
        self.dock.shutdown()
        self.iface.removeDockWidget(self.dock)
        self.dock.deleteLater()
        self.dock = None

    def unload(self) -> None:
        self._remove_dock()
        if self.action is not None:
            self.iface.removeToolBarIcon(self.action)
            self.iface.removePluginMenu(MENU, self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
