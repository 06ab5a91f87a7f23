"""Plugin glue: the toolbar button and menu entry, the dock, and the Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .gis.resources import ICON
from .processing_provider.provider import TreecrownsProvider

MENU = "&Tree crowns"


class TreecrownsPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: TreecrownsProvider | None = None
        self.action: QAction | None = None
        self.dock = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS hook
        self.provider = TreecrownsProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS hook
        self.initProcessing()
        self.action = QAction(QIcon(str(ICON)), "Tree crowns", self.iface.mainWindow())
        self.action.setObjectName("TreecrownsShowDock")
        self.action.setCheckable(True)
        self.action.toggled.connect(self.show_dock)
        self.iface.addPluginToMenu(MENU, self.action)
        self.iface.addToolBarIcon(self.action)

    def show_dock(self, visible: bool = True) -> None:
        """Create the dock on first use (it imports torch, which takes a moment)."""
        if self.dock is None:
            if not visible:
                return
            from .ui.detection_dock import DetectionDock

            self.dock = DetectionDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
            self.dock.visibilityChanged.connect(self._sync_action)
        self.dock.setVisible(visible)

    def _sync_action(self, visible: bool) -> None:
        if self.action is not None and self.action.isChecked() != visible:
            self.action.setChecked(visible)

    def unload(self) -> None:
        if self.dock is not None:
            if self.dock.task is not None:
                self.dock.task.cancel()
            self.dock.shutdown()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removeToolBarIcon(self.action)
            self.iface.removePluginMenu(MENU, self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
