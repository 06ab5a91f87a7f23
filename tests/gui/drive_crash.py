"""Run inside the real QGIS desktop: review edits, one autosave, more edits, then QGIS dies (SIGKILL).

result.json records what was edited before and after the autosave; tests/gui/test_desktop.py then
opens the GeoPackage to see what a user gets back after a crash.
"""

import os
import signal
import time

import processing
import qgis.utils
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget, QToolBar

from desktop_harness import OUT, RASTER, finish, guarded, result, save


def start():
    iface = qgis.utils.iface
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.loadPlugin("treecrowns") and qgis.utils.startPlugin("treecrowns")
    from treecrowns.gis.layers import open_crowns_layer

    raster = QgsRasterLayer(RASTER, "sample orthophoto")
    QgsProject.instance().addMapLayer(raster)
    iface.mapCanvas().setExtent(raster.extent())
    gpkg = OUT / "crowns.gpkg"
    processing.run("treecrowns:import_annotations", {"ANNOTATIONS": RASTER.replace(".tif", ".csv"), "RASTER": RASTER,
                                                     "OUTPUT": str(gpkg)})
    crowns = open_crowns_layer(gpkg, "hand-drawn crowns")
    QgsProject.instance().addMapLayer(crowns)
    [button] = [a for tb in iface.mainWindow().findChildren(QToolBar) for a in tb.actions() if a.objectName() == "TreecrownsShowDock"]
    button.trigger()
    dock = iface.mainWindow().findChild(QDockWidget, "TreecrownsDock")
    dock.tabs.setCurrentWidget(dock.review)
    panel = dock.review
    panel.layer_combo.setLayer(crowns)
    result["autosave_on_by_default"] = panel.autosave_check.isChecked()
    result["autosave_minutes"] = panel.autosave_minutes.value()
    result["crowns_at_start"] = crowns.featureCount()
    iface.setActiveLayer(crowns)
    crowns.selectByIds([f.id() for f in crowns.getFeatures()][:3])
    panel.delete_selected()
    result["crowns_after_first_edits"] = crowns.featureCount()
    panel.autosave_timer.start(1000)  # minutes in the panel; a second here
    started = time.monotonic()

    def after_autosave():
        result["modified_after_autosave"] = crowns.isModified()
        result["still_editing_after_autosave"] = crowns.isEditable()
        result["autosave_s"] = round(time.monotonic() - started, 1)
        panel.autosave_timer.stop()
        crowns.selectByIds([f.id() for f in crowns.getFeatures()][:2])
        panel.delete_selected()
        result["crowns_in_qgis_at_crash"] = crowns.featureCount()
        save("1-before-crash")
        finish()  # writes result.json (and asks QGIS to quit, which the kill below outruns)
        os.kill(os.getpid(), signal.SIGKILL)

    QTimer.singleShot(2500, guarded(after_autosave))


QTimer.singleShot(1000, guarded(start))
