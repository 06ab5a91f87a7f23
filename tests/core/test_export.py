import json

import numpy as np
import rasterio
from shapely.geometry import Polygon

from synthetic import write_raster
from treecrowns.core.annotations import ImageAnnotations, read_coco, read_deepforest_csv, write_coco
from treecrowns.core.export import export_training_set


def test_export_cuts_georeferenced_chips_with_csv_and_coco(tmp_path):
    crowns = [(10, 10, 20), (70, 15, 20), (45, 60, 30)]
    raster = write_raster(tmp_path / "plot.tif", 100, 100, crowns)
    boxes = np.array([[c, r, c + s, r + s] for c, r, s in crowns], dtype=float)
    item = ImageAnnotations(str(raster), boxes, ("Tree", "Tree", "Snag"))
    summary = export_training_set([item], tmp_path / "export", chip_size=50)
    assert summary.chips == 4
    chips = {c.image_path: c for c in read_deepforest_csv(summary.csv_path)}
    top_left = chips[str(tmp_path / "export" / "images" / "plot_0_0.tif")]
    assert top_left.boxes.tolist() == [[10, 10, 30, 30]] and top_left.labels == ("Tree",)
    with rasterio.open(tmp_path / "export" / "images" / "plot_50_0.tif") as chip, rasterio.open(raster) as src:
        assert chip.transform.c == src.transform.c + 50 * 0.1 and chip.crs == src.crs
        assert (chip.read() == src.read(window=((0, 50), (50, 100)))).all()
    coco = read_coco(summary.coco_path)
    assert sum(len(c.labels) for c in coco) == summary.crowns
    assert {label for c in coco for label in c.labels} == {"Tree", "Snag"}


def test_coco_roundtrip(tmp_path):
    item = ImageAnnotations(str(tmp_path / "a.tif"), np.array([[1.0, 2.0, 11.0, 22.0]]), ("Tree",))
    write_coco([item], tmp_path / "c.json", {item.image_path: (50, 60)})
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["annotations"][0]["bbox"] == [1.0, 2.0, 10.0, 20.0]
    [again] = read_coco(tmp_path / "c.json")
    assert again.boxes.tolist() == item.boxes.tolist() and again.labels == ("Tree",)


def test_export_of_a_polygon_area_blacks_out_what_lies_outside_it(tmp_path):
    crowns = [(10, 10, 20), (70, 70, 20)]  # the second lies outside the triangle
    raster = write_raster(tmp_path / "plot.tif", 100, 100, crowns)
    boxes = np.array([[c, r, c + s, r + s] for c, r, s in crowns], dtype=float)
    triangle = Polygon([(0, 0), (100, 0), (0, 100)])
    item = ImageAnnotations(str(raster), boxes, ("Tree", "Tree"), regions=(triangle,))
    summary = export_training_set([item], tmp_path / "export", chip_size=100)
    assert (summary.chips, summary.crowns) == (1, 1)
    with rasterio.open(tmp_path / "export" / "images" / "plot_0_0.tif") as chip:
        pixels = chip.read()
    assert pixels[:, 60:, 60:].max() == 0 and pixels[:, :30, :30].min() > 0
