"""The dock shown while the engine's packages are missing: what is missing, and one button to install them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget
from qgis.PyQt.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..gis.dependencies import CPU_ONLY_INDEX, REQUIRED, default_index
from ..gis.install_task import InstallOutcome, InstallTask

INDEX_SETTING = "treecrowns/package_index"


class InstallDock(QgsDockWidget):
    """Explains what is missing and installs it into the profile's packages folder in a background task."""

    def __init__(self, missing: list[str], folder: Path, on_installed: Callable[[], None], parent=None) -> None:
        super().__init__("Tree crowns", parent)
        self.setObjectName("TreecrownsInstallDock")
        self.folder = folder
        self.on_installed = on_installed
        self.task: InstallTask | None = None

        body = QWidget()
        layout = QVBoxLayout(body)
        pins = ", ".join(REQUIRED[name] for name in missing)
        self.explanation = QLabel(
            f"<b>Tree-crown detection needs packages QGIS's Python does not have:</b> {', '.join(missing)}.<br>"
            f"<b>Install</b> puts {pins} and what they need into "
            f"<code>{folder}</code>. QGIS itself is not changed and no administrator rights are needed."
        )
        self.explanation.setWordWrap(True)
        layout.addWidget(self.explanation)

        form = QFormLayout()
        self.index_edit = QLineEdit()
        self.index_edit.setPlaceholderText("the index pip is set up for")
        self.index_edit.setToolTip(
            "Empty: the package index QGIS's pip is set up for. Or another index, such as PyTorch's much smaller "
            f"CPU-only one ({CPU_ONLY_INDEX}), or a folder of wheel files."
        )
        form.addRow("Package index", self.index_edit)
        layout.addLayout(form)
        self.index_reason = QLabel()
        self.index_reason.setWordWrap(True)
        layout.addWidget(self.index_reason)
        settings = QgsSettings()
        if settings.contains(INDEX_SETTING):
            self.index_edit.setText(settings.value(INDEX_SETTING, "", type=str))
            self.index_reason.setText("<i>The package index you chose last time.</i>")
        else:
            choice = default_index()
            self.index_edit.setText(choice.url)
            self.index_reason.setText(f"<i>Package index: {choice.reason}.</i>")
        self.index_edit.setCursorPosition(0)

        buttons = QHBoxLayout()
        self.install_button = QPushButton("Install")
        self.install_button.setObjectName("TreecrownsInstallButton")
        self.install_button.clicked.connect(self.start_install)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_install)
        buttons.addWidget(self.install_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.step = QLabel("")
        self.step.setWordWrap(True)
        layout.addWidget(self.step)

        self.log_box = QgsCollapsibleGroupBox("pip log")
        self.log_box.setCollapsed(True)
        log_layout = QVBoxLayout(self.log_box)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        log_layout.addWidget(self.log)
        layout.addWidget(self.log_box)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.setWidget(body)

    def start_install(self) -> None:
        index_url = self.index_edit.text().strip()
        QgsSettings().setValue(INDEX_SETTING, index_url)
        self.install_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("")
        self.log.clear()
        self.task = InstallTask(self.folder, index_url, self._finished)
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.task.stepChanged.connect(self.step.setText)
        self.task.logLine.connect(self.log.appendPlainText)
        QgsApplication.taskManager().addTask(self.task)

    def cancel_install(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _finished(self, outcome: InstallOutcome) -> None:
        self.task = None
        self.cancel_button.setEnabled(False)
        self.install_button.setEnabled(True)
        if outcome.error is not None:
            self.progress.setValue(0)
            self.status.setText(("<b>Cancelled.</b> " if outcome.cancelled else "<b>Not installed.</b> ") + outcome.error)
            if not outcome.cancelled:
                self.log_box.setCollapsed(False)
            return
        self.progress.setValue(100)
        self.status.setText(f"Installed {len(outcome.installed)} packages.")
        self.on_installed()

    def shutdown(self) -> None:
        """Stop a running install when the plugin is unloaded."""
        if self.task is not None:
            self.task.cancel()
