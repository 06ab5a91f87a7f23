"""Run inside the real QGIS desktop (qgis --code): open the dock, detect on the sample, check, screenshot.

Writes result.json and PNG screenshots into $TREECROWNS_GUI_OUT, then quits QGIS.
Driven by tests/gui/test_desktop.py.
"""

import time

import qgis.utils
from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget, QToolBar

from desktop_harness import OUT, RASTER, finish, guarded, result, save, start_heartbeat, stop_heartbeat


def write_nir_first_copy(source, target):
    """The sample's RGB behind a constant near-infrared band, colour-tagged as such."""
    import numpy as np
    import rasterio
    from rasterio.enums import ColorInterp

    with rasterio.open(source) as src:
        rgb = src.read([1, 2, 3])
        profile = {**src.profile, "count": 4}
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(np.concatenate([np.full_like(rgb[:1], 200), rgb]))
        dst.colorinterp = [ColorInterp.undefined, ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    return str(target)


def write_nodata_copy(source, target):
    """The sample's size and georeference, every pixel the nodata value."""
    import numpy as np
    import rasterio

    with rasterio.open(source) as src:
        profile = {**src.profile, "nodata": 0}
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(np.zeros((3, profile["height"], profile["width"]), dtype=np.uint8))
    return str(target)


def start():
    iface = qgis.utils.iface
    import torch  # the real desktop must survive importing torch (see DESIGN.md on triton)

    result["torch"] = torch.__version__
    qgis.utils.updateAvailablePlugins()  # QGIS was started with --noplugins; make it see ours
    assert qgis.utils.loadPlugin("treecrowns"), "plugin could not be loaded"
    assert qgis.utils.startPlugin("treecrowns"), "plugin could not be started"
    plugin = qgis.utils.plugins["treecrowns"]
    raster = QgsRasterLayer(RASTER, "sample orthophoto")
    assert raster.isValid()
    QgsProject.instance().addMapLayer(raster)
    iface.mapCanvas().setExtent(raster.extent())
    # Open the dock the way a user does: the toolbar button.
    buttons = [a for tb in iface.mainWindow().findChildren(QToolBar) for a in tb.actions() if a.objectName() == "TreecrownsShowDock"]
    result["toolbar_button"] = bool(buttons)
    buttons[0].trigger()
    dock = iface.mainWindow().findChild(QDockWidget, "TreecrownsDock")
    result["dock_visible"] = bool(dock and dock.isVisible())
    result["raster_choices"] = [dock.raster_combo.itemText(i) for i in range(dock.raster_combo.count())]
    result["model_info"] = dock.model_info.text()
    # The views checkbox follows the model, and the score threshold follows the checkbox.
    views = {"checked": dock.views_check.isChecked(), "score": dock.score_spin.value()}
    dock.views_check.setChecked(not views["checked"])
    views["score_after_toggle"] = dock.score_spin.value()
    views["settings_after_toggle"] = dock.settings().test_time_augmentation
    dock.views_check.setChecked(views["checked"])
    views["score_after_toggle_back"] = dock.score_spin.value()
    result["views"] = views
    # A 4-band orthophoto with near infrared first: the band choosers pick the tagged red, green, blue.
    four_band = QgsRasterLayer(write_nir_first_copy(RASTER, OUT / "nir-first.tif"), "nir first")
    QgsProject.instance().addMapLayer(four_band)
    dock.raster_combo.setLayer(four_band)
    result["bands_nir_first"] = [c.currentBand() for c in dock.band_combos]
    result["settings_bands_nir_first"] = dock.settings().bands
    dock.raster_combo.setLayer(raster)
    result["bands_sample"] = [c.currentBand() for c in dock.band_combos]
    QgsProject.instance().removeMapLayer(four_band.id())
    dock.output_widget.setFilePath(str(OUT / "crowns.gpkg"))
    save("1-dock-open")
    heartbeat = start_heartbeat()
    plugin._test_heartbeat = heartbeat
    started = time.monotonic()
    dock.detect_button.click()
    result["detect_click_s"] = time.monotonic() - started
    result["task_started"] = dock.task is not None

    def wait_for_layer():
        if dock.task is not None and time.monotonic() - started < 240:
            QTimer.singleShot(100, guarded(wait_for_layer))
            return
        stop_heartbeat(heartbeat)
        layers = [l for l in QgsProject.instance().mapLayers().values() if isinstance(l, QgsVectorLayer)]
        result["status_text"] = dock.status.text()
        result["layers"] = [
            {
                "name": l.name(),
                "features": l.featureCount(),
                "crs": l.crs().authid(),
                "fields": l.fields().names(),
                "renderer": l.renderer().type(),
                "inside_raster": all(raster.extent().contains(f.geometry().boundingBox()) for f in l.getFeatures()),
                "source": l.source(),
            }
            for l in layers
        ]
        iface.mapCanvas().refreshAllLayers()
        QTimer.singleShot(1500, guarded(after_render))

    def after_render():
        save("2-crowns-detected")
        bad_input_through_the_dock(dock, raster, lambda: (qgis.utils.unloadPlugin("treecrowns"),
                                                          QTimer.singleShot(500, guarded(after_unload))))

    def after_unload():
        result["dock_after_unload"] = iface.mainWindow().findChild(QDockWidget, "TreecrownsDock") is not None
        result["toolbar_button_after_unload"] = any(
            a.objectName() == "TreecrownsShowDock" for tb in iface.mainWindow().findChildren(QToolBar) for a in tb.actions()
        )
        finish()

    QTimer.singleShot(100, guarded(wait_for_layer))


def bad_input_through_the_dock(dock, raster, then):
    """Bad input the way a user gives it, through the dock: each case leaves a message in the dock's status."""
    broken_model = OUT / "broken.safetensors"
    broken_model.write_bytes(b"\x00" * 64)
    nodata = QgsRasterLayer(write_nodata_copy(RASTER, OUT / "nodata.tif"), "all nodata")
    cases = [
        ("output folder missing", lambda: dock.output_widget.setFilePath(str(OUT / "no" / "such" / "c.gpkg"))),
        ("output open as a layer", lambda: dock.output_widget.setFilePath(result["layers"][0]["source"].split("|")[0])),
        ("broken checkpoint", lambda: (dock.output_widget.setFilePath(str(OUT / "broken_model.gpkg")),
                                       dock.add_model(str(broken_model)))),
        ("raster of nodata only", lambda: (dock.model_combo.setCurrentIndex(0), QgsProject.instance().addMapLayer(nodata),
                                           dock.raster_combo.setLayer(nodata),
                                           dock.output_widget.setFilePath(str(OUT / "nodata_crowns.gpkg")))),
    ]
    result["dock_bad_input"] = {}

    def next_case(index=0):
        if index == len(cases):
            dock.raster_combo.setLayer(raster)
            then()
            return
        name, prepare = cases[index]
        prepare()
        dock.detect_button.click()
        began = time.monotonic()

        def wait():
            if dock.task is not None and time.monotonic() - began < 120:
                QTimer.singleShot(100, guarded(wait))
                return
            # A checkpoint that cannot be read is named as soon as it is chosen, and Detect stays off.
            shown = dock.model_info.text() if name == "broken checkpoint" else dock.status.text()
            result["dock_bad_input"][name] = {"message": shown, "detect_enabled": dock.detect_button.isEnabled()}
            if index == len(cases) - 1:
                save("3-bad-input-message")
            next_case(index + 1)

        QTimer.singleShot(100, guarded(wait))

    next_case()


QTimer.singleShot(1000, guarded(start))
