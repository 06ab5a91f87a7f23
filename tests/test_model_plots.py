"""How the bundled model's training data is read: sites, pixel sizes and the validation split."""

import sys
from pathlib import Path

import numpy as np

from synthetic import write_raster

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "model"))

from plots import held_out_every, read_plots, site_folds  # noqa: E402
from treecrowns.core.patches import load_samples  # noqa: E402


def data_folder(tmp_path, names_and_sites, crs="EPSG:32618"):
    """A data folder as ../shared/data holds them: images/, annotations.csv and plots.csv."""
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    annotations, plots = ["image_path,xmin,ymin,xmax,ymax,label"], ["image_path,site,width,height,crs,gsd_m,n_trees"]
    for name, site in names_and_sites:
        write_raster(folder / "images" / name, 96, 96, [(10, 10, 20)], crs=None if not crs else "EPSG:32618")
        annotations.append(f"images/{name},10,10,30,30,Tree")
        plots.append(f"images/{name},{site},96,96,{crs},0.096,1")
    (folder / "annotations.csv").write_text("\n".join(annotations) + "\n")
    (folder / "plots.csv").write_text("\n".join(plots) + "\n")
    return folder


def test_both_flight_years_of_a_plot_fall_on_one_side_of_the_split(tmp_path):
    names = [(f"ABBY_{n:03d}_{year}.tif", "ABBY") for n in range(1, 7) for year in (2018, 2019)]
    plots = read_plots(data_folder(tmp_path, names, crs=""))
    train, validation = held_out_every(plots)
    assert [p.name for p in validation] == ["ABBY_005_2018", "ABBY_005_2019"]
    assert {p.place for p in train}.isdisjoint(p.place for p in validation)
    assert {p.site for p in plots} == {"ABBY"}


def test_plots_without_georeference_are_read_at_the_pixel_size_of_their_plot_list(tmp_path):
    [plot] = read_plots(data_folder(tmp_path, [("2018_SJER_3_image_1.tif", "SJER")], crs=""))
    assert plot.site == "SJER" and plot.crowns.pixel_size_m == 0.096
    [sample] = load_samples([plot.crowns], ("Tree",), 0.192)  # half the pixels each way
    assert tuple(sample.image.shape) == (3, 48, 48) and np.allclose(sample.boxes.numpy(), [[5, 5, 15, 15]])
    [referenced] = read_plots(data_folder(tmp_path / "b", [("HARV_001.tif", "HARV")]))
    assert referenced.crowns.pixel_size_m is None, "a georeferenced plot states its own pixel size"


def test_the_site_folds_hold_every_labelled_site_once():
    folds = site_folds()
    sites = [site for fold in folds for site in fold]
    assert len(folds) == 4 and len(sites) == len(set(sites)) == 18
