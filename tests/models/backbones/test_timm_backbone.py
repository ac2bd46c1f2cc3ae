import pytest
import timm
import torch

from models.backbones.timm_backbone import TimmFeatureExtractor
from utils.errors import CheckpointError, ConfigError, WeightsUnavailableError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_timm_backbone_channels_and_strides_from_feature_info():
    backbone = TimmFeatureExtractor("resnet18", pretrained=False, out_indices=[1, 2, 3])
    assert backbone.channels == [64, 128, 256]
    assert backbone.strides == [4, 8, 16]
    features = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4)]


def test_timm_backbone_frozen_and_stays_in_eval_mode():
    backbone = TimmFeatureExtractor("resnet18", pretrained=False, out_indices=[1, 2, 3])
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.training
    assert not any(m.training for m in backbone.modules())
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone(torch.randn(2, 3, 64, 64) * 5 + 3)  # batch-norm statistics must not move
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_timm_backbone_offline_pretrained_raises_weights_unavailable(offline_hub):
    with pytest.raises(WeightsUnavailableError) as info:
        TimmFeatureExtractor("resnet18", pretrained=True, out_indices=[1, 2, 3])
    message = str(info.value)
    assert "checkpoint_path: /path/to/resnet18.pth" in message
    assert "--opts model.net.backbone.kwargs.checkpoint_path=" in message
    assert "pretrained: false" in message


@pytest.mark.parametrize("wrap", ["plain", "nested", "ddp"])
def test_timm_backbone_checkpoint_path_loads_weights(tmp_path, offline_hub, wrap):
    source = timm.create_model("resnet18", pretrained=False)  # full classifier, as a downloaded file would be
    torch.nn.init.normal_(source.layer1[0].conv1.weight)
    state = source.state_dict()
    if wrap == "nested":
        state = {"state_dict": state, "epoch": 3}
    elif wrap == "ddp":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    # checkpoint_path wins over pretrained: true, so no hub access happens (the hub is offline here).
    backbone = TimmFeatureExtractor("resnet18", pretrained=True, checkpoint_path=str(path), out_indices=[1, 2, 3])
    loaded = backbone.model.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert not any(p.requires_grad for p in backbone.parameters())


def test_timm_backbone_missing_checkpoint_file_raises(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        TimmFeatureExtractor("resnet18", pretrained=False, checkpoint_path=tmp_path / "none.pth", out_indices=[1])


@pytest.mark.parametrize(
    ("other", "expected"),
    [("resnet34", "unexpected keys"), ("efficientnet_b0", "missing keys"), ("resnet18_wide", "shape mismatches")],
)
def test_timm_backbone_mismatched_checkpoint_raises(tmp_path, other, expected):
    if other == "resnet18_wide":
        state = timm.create_model("resnet18", pretrained=False).state_dict()
        state["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    else:
        state = timm.create_model(other, pretrained=False).state_dict()
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=expected):
        TimmFeatureExtractor("resnet18", pretrained=False, checkpoint_path=path, out_indices=[1, 2, 3])


def test_timm_backbone_unreadable_checkpoint_raises(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        TimmFeatureExtractor("resnet18", pretrained=False, checkpoint_path=path, out_indices=[1])


@pytest.mark.parametrize(
    ("model_name", "out_indices", "match"),
    [
        ("resnet1800", [1], "unknown timm backbone 'resnet1800'"),
        ("resnet18", [1, 9], "out of range"),
        ("resnet18", [], "at least one"),
    ],
)
def test_timm_backbone_bad_arguments_raise_config_error(model_name, out_indices, match):
    with pytest.raises(ConfigError, match=match):
        TimmFeatureExtractor(model_name, pretrained=False, out_indices=out_indices)
