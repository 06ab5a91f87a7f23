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
SETTINGS_OFF = {"weight_average_decay": 0.0, "style_mixing": 0.0, "box_loss": "l1", "equalise_share": 0.0}


def write_card(folder: Path) -> str:
    done = subprocess.run([sys.executable, str(WRITER), "--models", str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return (folder / "MODEL_CARD.md").read_text()


def scores(tp: int, fp: int, missed: int, plots: int = 3) -> dict:
    p, r = tp / (tp + fp), tp / (tp + missed)
    return {"plots": plots, "true_positives": tp, "false_positives": fp, "missed": missed,
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r)}


def small_bundle(folder: Path, loso_sites: dict, newer_provenance: bool = False, recipes: list | None = None) -> None:
    """A checkpoint and figures to write a card from; ``newer_provenance`` adds what checkpoints
    record since 2026-11-30 (half the patches from mosaics, one thread); ``recipes`` are earlier
    recipes' leave-one-site-out F1s."""
    calibration = {"one view": {**scores(10, 10, 10), "score_threshold": 0.3},
                   "four views": {**scores(12, 8, 8), "score_threshold": 0.15}}
    settings = {"seed": 0, "epochs": 30, "steps_per_epoch": 100, "batch_size": 16, "weight_decay": 1e-4,
                "learning_rate": 0.02, "warmup_steps": 100, "scale_jitter": [0.8, 1.25]}
    provenance = {
        "settings": {**settings, "mosaic_share": 0.5} if newer_provenance else settings,
        "training_data": {"train_plots": ["A_1.tif", "A_2.tif"], "validation_plots": ["A_3.tif"], "train_crowns": 40},
        **({"torch_threads": 1} if newer_provenance else {}),
    }
    meta = ModelMetadata(
        architecture=lite_architecture(trunk="compact"), labels=("Tree",), ground_resolution_m=0.2, patch_size=200,
        score_threshold=0.15, test_time_augmentation=True, metrics={"calibration": calibration}, provenance=provenance,
    )
    folder.mkdir()
    save_checkpoint(new_model(meta), folder / "treecrowns-neon-lite.safetensors")
    (folder / "treecrowns-neon-lite.history.json").write_text(json.dumps({"best_epoch": 21, "minutes": 66.6}))
    shutil.copy(MODELS / "MODEL_CARD.template.md", folder)
    table = {"A": scores(12, 8, 8, 1), "all": scores(12, 8, 8, 1)}
    (folder / "validation.json").write_text(json.dumps({"0.05": table, "0.1": table, "0.2": table}))
    (folder / "leave-one-site-out.json").write_text(json.dumps(loso_sites))
    (folder / "recipes.json").write_text(json.dumps({"recipes": recipes or []}))
    (folder / "sample_plots.json").write_text(json.dumps({"OSBS_029": scores(30, 2, 31, 1), "all": scores(30, 2, 31, 1)}))
    runs = [{"name": "bundled", "seconds": 4.0, "seconds_per_hectare": 1.0},
            {"name": "DeepForest", "seconds": 64.0, "seconds_per_hectare": 16.0}]
    (folder / "benchmark.json").write_text(json.dumps({"raster_px": 2000, "hectares": 4.0, "threads": 2, "speedup": 16.0, "runs": runs}))


def loso_row(f1_counts) -> dict:
    row = scores(*f1_counts)
    return {"0.05": row, "0.1": row, "0.2": row, "best_epoch": 20, "minutes": 90, "views": "four", "score_threshold": 0.2}


def test_the_card_reports_the_figures_it_was_given_and_which_sites_are_missing(tmp_path):
    small_bundle(tmp_path / "two", {"OSBS": loso_row((30, 20, 48)), "SJER": loso_row((100, 50, 102))})
    card = write_card(tmp_path / "two")
    assert "2 training plots (40 crowns)" in card and "1 validation plots" in card
    assert "| four views | 0.15 | 0.600 | 0.600 | 0.600 | chosen |" in card
    assert "| OSBS | 3 | 78 | 0.600 | 0.385 | **0.469** |" in card
    assert "| HARV | | | not run yet |" in card and "Not run yet: HARV, TEAK" in card
    assert "**mean of the four sites**" not in card
    assert "**16×" in card and "$" not in card
    assert "Every patch is cut from one plot." in card, "a checkpoint without mosaic patches says so"
    assert "does not record its number of threads" in card
    assert "OSBS 0.469, SJER 0.568; no mean until all four sites are run" in card and "**Not reached.**" in card
    assert "Size: " in card and "run is 16× faster than with DeepForest's architecture" in card
    assert "| OSBS_029 | 61 | 30 | 0.938 | 0.492 | 0.645 | `samples/OSBS_029.jpg` |" in card, "the public sample plots, per plot"

    four = {site: loso_row((20 * (i + 1), 20, 20)) for i, site in enumerate(("HARV", "OSBS", "SJER", "TEAK"))}
    small_bundle(tmp_path / "four", four)
    card = write_card(tmp_path / "four")
    mean = sum(loso_row((20 * (i + 1), 20, 20))["0.1"]["f1"] for i in range(4)) / 4
    assert f"| **mean of the four sites** | | | | | **{mean:.3f}** |" in card
    assert f"mean **{mean:.3f}** (HARV " in card, "the headline gives the same mean as the table"
    assert "Goal: 0.65 (DeepForest's release model: about 0.70). Reached." in card, "a mean of 0.65 or more meets the goal"


def test_the_card_sets_earlier_recipes_beside_this_one_and_says_which_mean_is_best(tmp_path):
    four = {site: loso_row((20, 20, 20)) for site in ("HARV", "OSBS", "SJER", "TEAK")}  # F1 0.5 each
    worse = {"name": "old way", "options": "--old", "folder": "output/old",
             "f1": {"HARV": 0.4, "OSBS": 0.4, "SJER": 0.4, "TEAK": 0.4}}
    better = {"name": "other way", "options": "--other", "folder": "output/other",
              "f1": {"HARV": 0.7, "OSBS": 0.5, "SJER": 0.5, "TEAK": 0.5}}
    partial = {"name": "half run", "options": "--half", "folder": "output/half", "f1": {"SJER": 0.9}}
    small_bundle(tmp_path / "best", four, recipes=[worse, partial])
    card = write_card(tmp_path / "best")
    assert "| recipe | HARV | OSBS | SJER | TEAK | mean |" in card
    assert "| old way | 0.400 | 0.400 | 0.400 | 0.400 | 0.400 |" in card
    assert "| half run | not run | not run | 0.900 | not run |  |" in card, "a recipe run on fewer than four sites gets no mean"
    assert "| no mosaic, zooms 0.8–1.25, 30 epochs (this checkpoint) | 0.500 | 0.500 | 0.500 | 0.500 | **0.500** |" in card
    assert "This checkpoint's recipe has the best mean of the 2 recipes run on all four sites." in card
    assert '--train --folder output/old \\\n    --recipe "--old"' in card
    assert '--train --sites SJER --folder output/half \\\n    --recipe "--half"' in card, "a partial run rebuilds its sites only"

    small_bundle(tmp_path / "beaten", four, recipes=[better])
    card = write_card(tmp_path / "beaten")
    assert "Another recipe has a higher mean (0.550) than this checkpoint's (0.500)." in card

    # The same recipe with another seed is shown, but it is not another recipe to beat.
    lucky_seed = {**better, "name": "this way, seed 1", "another_seed_of_this_recipe": True}
    small_bundle(tmp_path / "seeds", four, recipes=[worse, lucky_seed])
    card = write_card(tmp_path / "seeds")
    assert "| this way, seed 1 | 0.700 | 0.500 | 0.500 | 0.500 | 0.550 |" in card
    assert "This checkpoint's recipe has the best mean of the 2 recipes run on all four sites." in card


def test_the_card_says_how_many_patches_came_from_mosaics_and_how_many_threads_trained_it(tmp_path):
    small_bundle(tmp_path / "mosaic", {}, newer_provenance=True)
    card = write_card(tmp_path / "mosaic")
    assert "50 % of the patches are cut from a 2 × 2 mosaic of four random training plots" in card
    assert "this checkpoint was trained with 1 thread," in card


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
    assert "$python model/train_bundled_model.py --threads 1\n" in build
    args = parse_options(["--threads", "1"])
    shipped = read_metadata(MODELS / "treecrowns-neon-lite.safetensors")
    # The checkpoint stores JSON: tuples come back as lists.
    expected = json.loads(json.dumps(recorded(training_settings(args))))
    settings = shipped.provenance["settings"]
    # A setting added after the checkpoint was trained is not in it; its default must be the
    # value that trains exactly as before.
    added_later = {key: expected[key] for key in expected.keys() - settings.keys()}
    assert all(SETTINGS_OFF.get(key, "unknown") == value for key, value in added_later.items()), added_later
    assert {**settings, **added_later} == expected
    assert shipped.provenance["torch_threads"] == args.threads
    assert shipped.architecture == json.loads(json.dumps(lite_architecture(trunk=args.trunk)))
    assert shipped.view_scales == args.view_scales
    plots = read_all_plots(tuple(data_folders(args.data)))
    train_plots, validation_plots = held_out_every(plots)
    train_items, validation_items = [p.crowns for p in train_plots], [p.crowns for p in validation_plots]
    data = shipped.provenance["training_data"]
    assert data["train_plots"] == [Path(item.image_path).name for item in train_items]
    assert data["validation_plots"] == [Path(item.image_path).name for item in validation_items]
    assert data["left_out_site"] is None and data["pseudo_labels"] is None and data["synthetic_pretraining"] is None
