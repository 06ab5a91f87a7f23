"""Correcting one plot and retraining with the Train dialog's defaults: the model learns the
corrections, and finds crowns at least as well on another plot of the site.

It re-scores the bundled model on two of its own held-out NEON plots, so it needs the training data.
"""

from pathlib import Path

import pytest

from treecrowns.core.annotations import read_deepforest_csv
from treecrowns.core.checkpoint import load_checkpoint
from treecrowns.core.evaluation import evaluate
from treecrowns.core.prediction import DetectionSettings, detect
from treecrowns.core.training import train
from treecrowns.core.training_settings import TrainingSettings

BUNDLED = Path(__file__).resolve().parents[2] / "resources" / "models" / "treecrowns-neon-lite.safetensors"


def f1_on(model_path: Path, item) -> float:
    """F1 on one plot, detecting with one view per patch at the checkpoint's threshold for one view.

    One view shows what the network itself learnt. The model card's retraining tables report the
    figures with the views the bundled model ships with.
    """
    one_view = DetectionSettings(device="cpu", test_time_augmentation=False)
    found = detect(item.image_path, load_checkpoint(model_path), one_view)
    return evaluate({"plot": found.pixel_boxes}, {"plot": item.boxes}).f1


@pytest.mark.slow
@pytest.mark.needs_training_data
def test_retraining_on_one_corrected_plot_learns_it_and_loses_nothing_on_another(neon, tmp_path):
    items = {Path(i.image_path).stem: i for i in read_deepforest_csv(neon / "annotations.csv")}
    # Both plots were held out from the bundled model's training (see its model card).
    corrected, other = items["HARV_041"], items["HARV_033"]
    before = {"corrected": f1_on(BUNDLED, corrected), "other": f1_on(BUNDLED, other)}
    tuned = tmp_path / "tuned.safetensors"
    result = train(load_checkpoint(BUNDLED), [corrected], tuned, TrainingSettings(device="cpu"))
    assert result.notes, "20 crowns are too few to hold some out: all are trained on"
    after = {"corrected": f1_on(tuned, corrected), "other": f1_on(tuned, other)}
    # Measured 2026-12-04 with the bundled model (100 epochs) at the rate it states, 0.003, one
    # thread: HARV_041 0.638 -> 0.694, HARV_033 0.571 -> 0.585. On 20 crowns one more crown found
    # right moves F1 by about 0.05, so 0.03 asks for at least one. (The 40-epoch model shipped
    # before it learnt HARV_041 by 0.118 at 0.001 from a lower start, 0.564; model card.)
    assert after["corrected"] >= before["corrected"] + 0.03, (before, after)
    assert after["other"] >= before["other"], (before, after)
