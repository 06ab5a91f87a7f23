"""Run inside the real QGIS desktop: the whole predict -> correct -> retrain -> predict loop, by mouse and keys.

Writes result.json and a screenshot per step into $TREECROWNS_GUI_OUT. Driven by tests/gui/test_desktop.py.
"""

import time

import qgis.utils
from qgis.core import QgsPointXY, QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication, QDockWidget

from desktop_harness import OUT, RASTER, finish, guarded, result, save


def wait_until(condition, then, timeout=300):
    started = time.monotonic()

    def poll():
        if condition():
            QTimer.singleShot(300, guarded(then))
        elif time.monotonic() - started > timeout:
            finish(f"timed out waiting before {then.__name__}")
        else:
            QTimer.singleShot(100, poll)

    QTimer.singleShot(100, poll)


def statuses(layer):
    counts = {}
    for f in layer.getFeatures():
        counts[f["status"]] = counts.get(f["status"], 0) + 1
    return counts


class Loop:
    def start(self):
        iface = qgis.utils.iface
        qgis.utils.updateAvailablePlugins()
        assert qgis.utils.loadPlugin("treecrowns") and qgis.utils.startPlugin("treecrowns")
        self.plugin = qgis.utils.plugins["treecrowns"]
        self.raster = QgsRasterLayer(RASTER, "sample orthophoto")
        QgsProject.instance().addMapLayer(self.raster)
        self.canvas = iface.mapCanvas()
        self.canvas.setExtent(self.raster.extent())
        self.canvas.refresh()
        self.plugin.action.trigger()
        self.dock = iface.mainWindow().findChild(QDockWidget, "TreecrownsDock")
        self.dock.raster_combo.setLayer(self.raster)
        self.dock.output_widget.setFilePath(str(OUT / "crowns.gpkg"))
        QTest.mouseClick(self.dock.detect_button, Qt.LeftButton)
        wait_until(lambda: self.dock.task is None and self.dock.last_outcome is not None, self.detected)

    def detected(self):
        self.crowns = self.dock.review.layer()
        result["detected"] = self.crowns.featureCount()
        self.dock.tabs.setCurrentWidget(self.dock.review)
        save("1-detected")
        self.draw_boxes()

    def focus_map(self):
        """Key shortcuts go to the active window; Xvfb has no window manager to activate it."""
        window = qgis.utils.iface.mainWindow()
        window.activateWindow()
        QApplication.setActiveWindow(window)
        self.canvas.setFocus()
        QApplication.processEvents()

    def to_screen(self, x, y):
        point = self.canvas.getCoordinateTransform().transform(QgsPointXY(x, y))
        return QPoint(int(point.x()), int(point.y()))

    def drag(self, x0, y0, x1, y1):
        viewport = self.canvas.viewport()
        a, b = self.to_screen(x0, y0), self.to_screen(x1, y1)
        QTest.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, a)
        QTest.mouseMove(viewport, QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2))
        QTest.mouseMove(viewport, b)
        QTest.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, b)

    def draw_boxes(self):
        review = self.dock.review
        QTest.mouseClick(review.draw_button, Qt.LeftButton)
        e = self.raster.extent()
        before = self.crowns.featureCount()
        for i in range(3):
            x = e.xMinimum() + (0.15 + 0.3 * i) * e.width()
            y = e.yMinimum() + 0.5 * e.height()
            self.drag(x, y, x + 3.0, y + 3.0)
        result["after_drawing"] = {"count": self.crowns.featureCount() - before, "statuses": statuses(self.crowns)}
        self.crowns.undoStack().undo()
        result["after_undo"] = self.crowns.featureCount() - before
        self.crowns.undoStack().redo()
        result["after_redo"] = self.crowns.featureCount() - before
        QTest.mouseClick(review.draw_button, Qt.LeftButton)  # back to the pan tool
        self.canvas.refresh()
        save("2-three-boxes-drawn")
        self.delete_two()

    def delete_two(self):
        predicted = [f.id() for f in self.crowns.getFeatures() if f["status"] == "predicted"][:2]
        before = self.crowns.featureCount()
        self.crowns.selectByIds(predicted)
        qgis.utils.iface.setActiveLayer(self.crowns)
        self.focus_map()
        QTest.keyClick(self.canvas, Qt.Key_Delete)
        result["deleted_with_key"] = before - self.crowns.featureCount()
        self.canvas.refresh()
        save("3-two-deleted")
        self.confirm_rest()

    def confirm_rest(self):
        self.crowns.selectByExpression("\"status\" = 'predicted'")
        result["selected_to_confirm"] = self.crowns.selectedFeatureCount()
        self.focus_map()
        QTest.keyClick(self.canvas, Qt.Key_C)
        result["after_confirm"] = statuses(self.crowns)
        review = self.dock.review
        review.score_slider.setValue(50)
        QTest.mouseClick(review.next_button, Qt.LeftButton)
        result["next_unreviewed_selected"] = self.crowns.selectedFeatureCount()
        self.mark_two_halves_reviewed()
        QTest.mouseClick(review.save_button, Qt.LeftButton)
        on_disk = QgsVectorLayer(str(OUT / "crowns.gpkg") + "|layername=crowns", "disk", "ogr")
        result["saved_statuses"] = statuses(on_disk)
        result["saved_areas"] = QgsVectorLayer(str(OUT / "crowns.gpkg") + "|layername=reviewed_areas", "a", "ogr").featureCount()
        self.canvas.refresh()
        save("4-confirmed-and-reviewed")
        self.train()

    def mark_two_halves_reviewed(self):
        """The west half with *Mark view reviewed*, the east half drawn with the reviewed-area tool:
        corrections in two places, so training judges the new model on the half it did not learn from."""
        review = self.dock.review
        e = self.raster.extent()
        middle = (e.xMinimum() + e.xMaximum()) / 2
        # The view over the west half keeps the canvas's shape, so it is moved until its right edge is the middle.
        self.canvas.setExtent(QgsRectangle(e.xMinimum(), e.yMinimum(), middle, e.yMaximum()))
        self.canvas.setCenter(QgsPointXY(middle - self.canvas.extent().width() / 2, e.center().y()))
        self.canvas.refresh()
        QTest.mouseClick(review.view_button, Qt.LeftButton)
        self.canvas.setExtent(e.buffered(0.05 * e.width()))  # the raster's edges inside the view, to drag to
        self.canvas.refresh()
        QTest.mouseClick(review.area_button, Qt.LeftButton)
        self.drag(middle, e.yMaximum(), e.xMaximum(), e.yMinimum())
        QTest.mouseClick(review.area_button, Qt.LeftButton)  # back to the pan tool
        result["reviewed_areas"] = review.areas.featureCount()
        result["reviewed_area_bounds"] = [
            [round(v - o, 1) for v, o in zip((b.xMinimum(), b.yMinimum(), b.xMaximum(), b.yMaximum()),
                                             (e.xMinimum(), e.yMinimum(), e.xMinimum(), e.yMinimum()))]
            for b in (f.geometry().boundingBox().intersect(e) for f in review.areas.getFeatures())
        ]

    def train(self):
        QTest.mouseClick(self.dock.train_button, Qt.LeftButton)
        self.dialog = self.dock.training_dialog
        self.dialog.epochs.setValue(1)
        result["train_defaults"] = {
            "rasters": [self.dialog.rasters.item(i).text() for i in range(self.dialog.rasters.count())
                        if self.dialog.rasters.item(i).checkState() == Qt.Checked],
            "reviewed_only": self.dialog.reviewed_only.isChecked(),
            "base": self.dialog.base_combo.currentText(),
            "learning_rate": self.dialog.learning_rate.value(),
        }
        result["learning_rate_of_a_model_stating_one"] = self.rate_shown_for_a_model_stating(0.004)
        save("5-train-dialog", self.dialog)
        QTest.mouseClick(self.dialog.train_button, Qt.LeftButton)
        result["training_started"] = self.dialog.task is not None
        wait_until(lambda: self.dialog.task is None, self.trained)

    def rate_shown_for_a_model_stating(self, rate):
        """Choose a base model that states its retraining rate, read the rate shown, and choose the first base again."""
        from dataclasses import replace

        from treecrowns.core.checkpoint import load_checkpoint, save_checkpoint

        model = load_checkpoint(self.dialog.base_combo.currentData())
        model.metadata = replace(model.metadata, retraining_learning_rate=rate)
        path = save_checkpoint(model, OUT / "stating-a-rate.safetensors")
        combo = self.dialog.base_combo
        first = combo.currentIndex()
        combo.addItem(path.name, str(path))
        combo.setCurrentIndex(combo.count() - 1)
        shown = self.dialog.learning_rate.value()
        combo.setCurrentIndex(first)
        combo.removeItem(combo.count() - 1)
        return shown

    def trained(self):
        result["training_status"] = self.dialog.status.text()
        result["new_model"] = self.dialog.new_model
        result["epochs_plotted"] = len(self.dialog.plot.reports)
        result["model_list"] = [self.dock.model_combo.itemData(i) for i in range(self.dock.model_combo.count())]
        result["selected_after_training"] = self.dock.selected_model()
        save("6-trained", self.dialog)
        self.layers_before = len(QgsProject.instance().mapLayers())
        self.dock.output_widget.setFilePath(str(OUT / "crowns_new_model.gpkg"))
        QTest.mouseClick(self.dialog.detect_button, Qt.LeftButton)
        wait_until(lambda: self.dock.task is None and len(QgsProject.instance().mapLayers()) > self.layers_before, self.detected_again)

    def detected_again(self):
        self.dialog.close()
        newest = self.dock.review.layer()
        result["second_detection"] = {"name": newest.name(), "features": newest.featureCount(),
                                      "model": next(newest.getFeatures())["model"] if newest.featureCount() else None,
                                      "source": newest.source()}
        self.canvas.refresh()
        QTimer.singleShot(1000, guarded(self.done))

    def done(self):
        save("7-detected-with-new-model")
        review = self.dock.review
        QTest.mouseClick(review.evaluate_button, Qt.LeftButton)
        dialog = review.dialogs["evaluate"]
        dialog.predictions.setLayer(review.layer())
        dialog.reference.setLayer(self.crowns)
        QTest.mouseClick(dialog.run_button, Qt.LeftButton)
        result["evaluation"] = {"figures": getattr(dialog, "figures", None), "text": dialog.result.text(),
                                "outcome_layer": dialog.outcome_layer.name() if dialog.outcome_layer else None,
                                "outcomes": sorted({f["outcome"] for f in dialog.outcome_layer.getFeatures()}) if dialog.outcome_layer else []}
        save("8-evaluation", dialog)
        dialog.close()
        review.layer_combo.setLayer(self.crowns)
        review.export_training_set(str(OUT / "export"))
        result["export"] = {"chips": len(list((OUT / "export" / "images").glob("*.tif"))),
                            "csv": (OUT / "export" / "annotations.csv").exists(),
                            "coco": (OUT / "export" / "annotations_coco.json").exists()}
        finish()


loop = Loop()
QTimer.singleShot(1000, guarded(loop.start))
