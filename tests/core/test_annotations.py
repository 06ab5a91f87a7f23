import numpy as np
import pytest

from synthetic import crown_map_box, write_raster
from treecrowns.core.annotations import (
    from_map_boxes,
    read_deepforest_csv,
    read_pascal_voc,
    write_deepforest_csv,
)
from treecrowns.core.errors import AnnotationError


def test_deepforest_csv_roundtrip(tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("image_path,xmin,ymin,xmax,ymax,label\nplot.tif,1,2,30,40,Tree\nplot.tif,5,5,9,9,Snag\n")
    [item] = read_deepforest_csv(csv_path)
    assert item.image_path == str(tmp_path / "plot.tif")
    assert item.boxes.tolist() == [[1, 2, 30, 40], [5, 5, 9, 9]] and item.labels == ("Tree", "Snag")
    write_deepforest_csv([item], tmp_path / "b.csv")
    [again] = read_deepforest_csv(tmp_path / "b.csv")
    assert again.boxes.tolist() == item.boxes.tolist() and again.labels == item.labels


@pytest.mark.parametrize(
    "text, message",
    [
        ("image_path,xmin,ymin,xmax\nplot.tif,1,2,3\n", "lacks column"),
        ("image_path,xmin,ymin,xmax,ymax,label\nplot.tif,1,2,x,4,Tree\n", "must be numbers"),
        ("image_path,xmin,ymin,xmax,ymax,label\nplot.tif,10,2,3,4,Tree\n", "xmax <= xmin"),
        ("image_path,xmin,ymin,xmax,ymax,label\n", "no boxes"),
    ],
)
def test_bad_csv_gives_the_line_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_deepforest_csv(path)


def test_pascal_voc(tmp_path):
    xml = tmp_path / "plot.xml"
    xml.write_text(
        "<annotation><filename>plot.tif</filename>"
        "<object><name>Tree</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>"
        "</annotation>"
    )
    item = read_pascal_voc(xml)
    assert item.boxes.tolist() == [[1, 2, 10, 12]] and item.labels == ("Tree",)
    xml.write_text("<annotation><filename>p.tif</filename><object><bndbox><xmin>1</xmin></bndbox></object></annotation>")
    with pytest.raises(AnnotationError):
        read_pascal_voc(xml)


def test_map_boxes_become_exact_pixel_boxes(tmp_path):
    crowns = [(10, 20, 15), (40, 5, 8)]
    path = write_raster(tmp_path / "r.tif", 60, 50, crowns)
    item = from_map_boxes(str(path), np.array([crown_map_box(c) for c in crowns]), ("Tree", "Tree"))
    assert np.allclose(item.boxes, [[10, 20, 25, 35], [40, 5, 48, 13]])


def test_annotations_outside_the_raster_are_an_error(tmp_path):
    path = write_raster(tmp_path / "r.tif", 60, 50, [])
    far_away = np.array([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(AnnotationError, match="none of the 1 annotation boxes lies on"):
        from_map_boxes(str(path), far_away, ("Tree",))
