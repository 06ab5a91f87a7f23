import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from treecrowns.core.checkpoint import ModelMetadata, load_checkpoint, new_model, read_metadata, save_checkpoint
from treecrowns.core.errors import CheckpointError, OutputError
from treecrowns.core.model import deepforest_architecture, lite_architecture


def small_lite(labels=("Tree",)) -> ModelMetadata:
    return ModelMetadata(
        architecture=lite_architecture(), labels=labels, ground_resolution_m=0.2, patch_size=64,
        provenance={"parent": None}, metrics={"validation": {"f1": 0.5}},
    )


def outputs_of(model, image):
    model.network.eval()
    model.network.score_thresh = 0.0
    with torch.inference_mode():
        return model.network([image])[0]


def test_roundtrip_keeps_weights_and_metadata(tmp_path):
    model = new_model(small_lite(("alive", "dead")))
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.metadata == model.metadata
    assert read_metadata(path).labels == ("alive", "dead")
    image = torch.rand(3, 64, 64)
    a, b = outputs_of(model, image), outputs_of(loaded, image)
    assert torch.allclose(a["scores"], b["scores"]) and torch.allclose(a["boxes"], b["boxes"])
    assert not list(tmp_path.glob(".*tmp")), "no temporary file may be left behind"


def test_a_checkpoint_states_its_retraining_rate_and_older_ones_state_none(tmp_path):
    stated = save_checkpoint(new_model(replace(small_lite(), retraining_learning_rate=0.003)), tmp_path / "new.safetensors")
    assert read_metadata(stated).retraining_learning_rate == 0.003
    header = json.loads(small_lite().to_json())
    del header["retraining_learning_rate"]  # as written before checkpoints stated one
    assert ModelMetadata.from_json(json.dumps(header)).retraining_learning_rate is None
    with pytest.raises(CheckpointError, match="retraining learning rate must be above 0"):
        replace(small_lite(), retraining_learning_rate=0.0)


def test_saving_into_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        save_checkpoint(new_model(small_lite()), tmp_path / "nope" / "m.safetensors")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a model checkpoint"),
        (b"\x00garbage" * 100, "not a model checkpoint"),
        (b"PK\x03\x04 broken zip", "not a model checkpoint"),
    ],
)
def test_files_that_are_not_checkpoints_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_truncated_safetensors_file_is_refused_clearly(tmp_path):
    path = save_checkpoint(new_model(small_lite()), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_pickle_that_would_run_code_is_not_executed(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": Exploit()}, handle)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def deepforest_state(num_classes=1):
    meta = ModelMetadata(architecture=deepforest_architecture(), labels=tuple(str(i) for i in range(num_classes)),
                         ground_resolution_m=0.1, patch_size=400)
    model = new_model(meta)
    torch.manual_seed(3)
    with torch.no_grad():
        model.network.head.classification_head.cls_logits.bias.normal_()
    return model, {f"model.{k}": v.clone() for k, v in model.network.state_dict().items()}


def test_deepforest_lightning_file_loads_with_labels_from_its_hyperparameters(tmp_path):
    model, state = deepforest_state(2)
    path = tmp_path / "deepforest.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"label_dict": {"Alive": 0, "Dead": 1}}}, path)
    loaded = load_checkpoint(path)
    assert loaded.metadata.labels == ("Alive", "Dead")
    assert loaded.metadata.architecture["family"] == "deepforest"
    assert loaded.metadata.ground_resolution_m == 0.1 and loaded.metadata.patch_size == 400
    assert torch.equal(
        loaded.network.head.classification_head.cls_logits.bias, model.network.head.classification_head.cls_logits.bias
    )


def test_deepforest_hugging_face_folder_loads(tmp_path):
    model, state = deepforest_state(1)
    save_file({k[len("model."):]: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"label_dict": {"Tree": 0}, "score_thresh": 0.1, "nms_thresh": 0.05}))
    loaded = load_checkpoint(tmp_path)
    assert loaded.metadata.labels == ("Tree",)
    assert loaded.metadata.nms_threshold == 0.05
    image = torch.rand(3, 96, 96)
    assert torch.allclose(outputs_of(model, image)["scores"], outputs_of(loaded, image)["scores"])


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    _model, state = deepforest_state(1)
    state.pop("model.head.classification_head.cls_logits.weight")
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)


def test_lite_network_sees_patches_at_native_size():
    model = new_model(small_lite())
    model.network.eval()
    images, _ = model.network.transform([torch.rand(3, 64, 64)])
    assert tuple(images.tensors.shape[-2:]) == (64, 64)
    assert np.isclose(sum(p.numel() for p in model.network.parameters()) / 1e6, 12.4, atol=0.5)


def test_adding_a_label_keeps_what_the_model_knew(tmp_path):
    from treecrowns.core.checkpoint import extend_labels

    model = new_model(small_lite(("Tree",)))
    image = torch.rand(3, 64, 64)
    model.network.eval()

    def head_outputs():
        with torch.inference_mode():
            features = model.network.backbone(model.network.transform([image])[0].tensors)
            return model.network.head(list(features.values()))

    before = head_outputs()
    assert extend_labels(model, ("Tree", "Dead")) == ("Dead",)
    assert model.metadata.labels == ("Tree", "Dead")
    after = head_outputs()
    assert after["cls_logits"].shape[-1] == 2
    assert torch.allclose(after["cls_logits"][..., 0], before["cls_logits"][..., 0], atol=1e-6)
    path = save_checkpoint(model, tmp_path / "two.safetensors")
    assert load_checkpoint(path).metadata.labels == ("Tree", "Dead")
    assert extend_labels(model, ("Dead",)) == ()


def test_new_models_start_from_the_same_weights_and_leave_the_callers_random_numbers_alone():
    meta = small_lite()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = new_model(meta).network.state_dict()
    assert torch.equal(torch.rand(3), expected_draw), "building a network does not reseed the caller's generator"
    second = new_model(meta).network.state_dict()
    assert all(torch.equal(first[k], v) for k, v in second.items())


def test_a_stride_4_pyramid_checkpoint_round_trips_and_reads_finer_features(tmp_path):
    """A model built to tell apart crowns a few pixels apart (anchors from P2) saves, loads and
    detects the same; its finest level has four times the positions of the default's."""
    meta = small_lite()
    fine = replace(meta, architecture=lite_architecture(finest_level=2))
    model = new_model(fine)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "fine.safetensors"))
    assert loaded.metadata.architecture["finest_level"] == 2
    image = torch.rand(3, 64, 64)
    a, b = outputs_of(model, image), outputs_of(loaded, image)
    assert torch.allclose(a["scores"], b["scores"]) and torch.allclose(a["boxes"], b["boxes"])

    def finest_map(network):
        with torch.inference_mode():
            return next(iter(network.backbone(image[None]).values())).shape[-1]

    assert finest_map(loaded.network) == 16 and finest_map(new_model(meta).network) == 8


def test_architectures_written_before_the_pyramid_option_stay_equal():
    assert "finest_level" not in lite_architecture()


def test_a_wider_trunk_checkpoint_round_trips_with_its_widths(tmp_path):
    """A model trained with more trunk channels is rebuilt from its file alone, at those widths."""
    meta = replace(small_lite(), architecture=lite_architecture(trunk="compact", trunk_widths=(48, 64, 128, 256, 320)))
    model = new_model(meta)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "wide.safetensors"))
    assert loaded.metadata.architecture["trunk_widths"] == [48, 64, 128, 256, 320]
    assert loaded.network.backbone.body.layer4[-1].bn2.num_features == 320
    compact = replace(small_lite(), architecture=lite_architecture(trunk="compact"))
    assert new_model(compact).network.backbone.body.layer4[-1].bn2.num_features == 256
    image = torch.rand(3, 64, 64)
    a, b = outputs_of(model, image), outputs_of(loaded, image)
    assert torch.allclose(a["scores"], b["scores"]) and torch.allclose(a["boxes"], b["boxes"])


def test_architectures_written_before_the_width_option_stay_equal():
    assert "trunk_widths" not in lite_architecture(trunk="compact")


@pytest.mark.parametrize("architecture, message", [
    ({**lite_architecture(trunk="compact"), "trunk_widths": [32, 48, 96]}, "not five positive whole numbers"),
    ({**lite_architecture(trunk="compact"), "trunk_widths": [32, 48, 96, 192, 0]}, "not five positive whole numbers"),
    ({**lite_architecture(trunk="resnet18"), "trunk_widths": [32, 48, 96, 192, 256]}, "whose widths are fixed"),
])
def test_impossible_trunk_widths_are_refused_clearly(architecture, message):
    with pytest.raises(CheckpointError, match=message):
        new_model(replace(small_lite(), architecture=architecture))


def test_an_unknown_pyramid_level_is_refused_clearly():
    meta = small_lite()
    odd = replace(meta, architecture={**lite_architecture(), "finest_level": 1})
    with pytest.raises(CheckpointError, match="finest pyramid level 1"):
        new_model(odd)
