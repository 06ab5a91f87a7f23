"""The EfficientNet-Lite trunk computes what the network its ImageNet weights were made for computes.

The reference is ``efficientnet-lite-pytorch`` (the architecture the ImageNet ``.pth`` files were
converted for), installed in the test environment only. Random weights stand in for ImageNet's:
the reference's state dict has the same names and shapes as an ImageNet file, so loading it
through ``trunk_weights_from_imagenet`` tests the same mapping without fetching 18 MB.
"""

import efficientnet_lite_pytorch as reference
import pytest
import torch
from treecrowns.core.checkpoint import ModelMetadata, load_checkpoint, new_model, save_checkpoint
from treecrowns.core.efficientnet_lite import (
    VARIANTS,
    EfficientNetLiteTrunk,
    load_imagenet_weights,
    trunk_weights_from_imagenet,
)
from treecrowns.core.errors import CheckpointError
from treecrowns.core.model import lite_architecture


def _reference_network(variant: str) -> torch.nn.Module:
    """The reference network with random weights and random BatchNorm statistics, in inference mode."""
    torch.manual_seed(1)
    network = reference.EfficientNet.from_name(variant.replace("_", "-"), image_size=None)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return network.eval()


def _reference_block_outputs(network: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = network._swish(network._bn0(network._conv_stem(x)))
    outputs = []
    for block in network._blocks:
        x = block(x)
        outputs.append(x)
    return outputs


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_trunk_computes_what_the_reference_network_computes(variant):
    network = _reference_network(variant)
    trunk = EfficientNetLiteTrunk(variant).eval()
    trunk.load_state_dict(trunk_weights_from_imagenet(trunk, network.state_dict()))
    # An odd size, so TensorFlow's "same" padding (the extra pixel after the image) is exercised.
    x = torch.rand(2, 3, 101, 130, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = _reference_block_outputs(network, x)
        stages = []
        y = trunk.stem(x)
        for stage in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4):
            y = stage(y)
            stages.append(y)
    # Each stage ends where the reference's last block at that stride ends.
    ends = [max(i for i, out in enumerate(expected) if out.shape == stage.shape) for stage in stages]
    assert [tuple(s.shape[-2:]) for s in stages] == [(26, 33), (13, 17), (7, 9), (4, 5)]
    assert ends[-1] == len(expected) - 1
    for stage, end in zip(stages, ends):
        torch.testing.assert_close(stage, expected[end], rtol=0, atol=1e-5)
    assert trunk.stage_channels == tuple(s.shape[1] for s in stages)


def test_a_detector_loads_imagenet_weights_into_its_trunk_and_its_checkpoint_carries_them(tmp_path):
    network = _reference_network("efficientnet_lite0")
    imagenet_file = tmp_path / "efficientnet-lite0.pth"
    torch.save(network.state_dict(), imagenet_file)
    metadata = ModelMetadata(lite_architecture(trunk="efficientnet_lite0"), ("Tree",), 0.2, 200)
    model = new_model(metadata)
    load_imagenet_weights(model.network.backbone.body, "efficientnet_lite0", imagenet_file)
    stem = model.network.backbone.body["stem"][0][0].weight
    torch.testing.assert_close(stem, network._conv_stem.weight)

    save_checkpoint(model, tmp_path / "model.safetensors")
    loaded = load_checkpoint(tmp_path / "model.safetensors")
    torch.testing.assert_close(loaded.network.backbone.body["stem"][0][0].weight, network._conv_stem.weight)
    loaded.network.eval()
    with torch.no_grad():
        detections = loaded.network([torch.rand(3, 200, 200)])
    assert set(detections[0]) == {"boxes", "scores", "labels"}


def test_weights_of_another_variant_are_refused_clearly(tmp_path):
    imagenet_file = tmp_path / "efficientnet-lite2.pth"
    torch.save(_reference_network("efficientnet_lite2").state_dict(), imagenet_file)
    model = new_model(ModelMetadata(lite_architecture(trunk="efficientnet_lite0"), ("Tree",), 0.2, 200))
    with pytest.raises(CheckpointError, match="another variant"):
        load_imagenet_weights(model.network.backbone.body, "efficientnet_lite0", imagenet_file)


def test_a_file_that_is_not_weights_is_refused_clearly(tmp_path):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a state dict")
    model = new_model(ModelMetadata(lite_architecture(trunk="efficientnet_lite0"), ("Tree",), 0.2, 200))
    with pytest.raises(CheckpointError, match="cannot read ImageNet weights"):
        load_imagenet_weights(model.network.backbone.body, "efficientnet_lite0", broken)


def test_an_unknown_variant_is_refused_clearly():
    with pytest.raises(CheckpointError, match="unknown EfficientNet-Lite variant"):
        EfficientNetLiteTrunk("efficientnet_lite9")
