"""Self-training data: pseudo-labels are a teacher's confident crowns, and a left-out site stays out."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from treecrowns.core.annotations import ImageAnnotations, read_deepforest_csv, write_deepforest_csv
from treecrowns.core.evaluation import evaluate
from treecrowns.core.sample_data import georeferenced_copy

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors"
sys.path.insert(0, str(REPO / "model"))

from train_bundled_model import pseudo_labelled  # noqa: E402


def test_pseudo_labels_are_mostly_real_crowns_and_skip_the_left_out_sites(tmp_path, osbs_plot, soap_plot):
    """The sample plots stand in for unlabelled ones (their drawn crowns only score the teacher), in two
    folders as the two unlabelled folders of the training data; SOAP and HARV are left out."""
    first, second = tmp_path / "unlabelled", tmp_path / "more-unlabelled"
    first.mkdir()
    second.mkdir()
    georeferenced_copy(soap_plot, first / "SOAP_061.tif")
    shutil.copy(osbs_plot.image, second / osbs_plot.image.name)
    output = tmp_path / "pseudo.csv"
    done = subprocess.run(
        [sys.executable, str(REPO / "model" / "pseudo_label.py"), "--model", str(BUNDLED), "--images", str(first),
         "--images", str(second), "--without-site", "SOAP,HARV", "--output", str(output)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr

    [item] = read_deepforest_csv(output)
    assert Path(item.image_path) == (second / "OSBS_029.tif").resolve()
    assert item.boxes.min() >= 0 and item.boxes.max() <= 400
    scored = evaluate({"plot": item.boxes}, {"plot": osbs_plot.crowns.boxes})
    # A teacher's confident crowns: most of them are crowns a person drew (IoU > 0.4).
    assert scored.precision >= 0.8, scored.as_dict()  # measured: 27 of 29 (0.93)


def test_pseudo_labelled_plots_of_the_left_out_site_are_dropped(tmp_path):
    csv = tmp_path / "pseudo.csv"
    write_deepforest_csv([
        ImageAnnotations("/data/HARV_001.tif", np.array([[1.0, 1.0, 9.0, 9.0]]), ("Tree",)),
        ImageAnnotations("/data/OSBS_002.tif", np.array([[2.0, 2.0, 8.0, 8.0]]), ("Tree",)),
    ], csv)

    assert [Path(it.image_path).name for it in pseudo_labelled(csv, ["HARV"])] == ["OSBS_002.tif"]
    assert len(pseudo_labelled(csv, [])) == 2
    assert pseudo_labelled(None, ["HARV"]) == []
