import pytest
import torch

from models.backbones.timm_backbone import TimmFeatureExtractor
from models.necks.multiscale import MultiScaleConcat

pytestmark = pytest.mark.usefixtures("one_thread")


def test_multiscale_efficientnet_b4_levels_give_272_channels_at_14x14():
    backbone = TimmFeatureExtractor("efficientnet_b4", pretrained=False, out_indices=[0, 1, 2, 3])
    neck = MultiScaleConcat(backbone.channels, backbone.strides, out_stride=16)
    assert backbone.strides == [2, 4, 8, 16]
    assert neck.out_channels == 272
    assert neck.output_size(224) == (14, 14)
    with torch.no_grad():
        feature = neck(backbone(torch.randn(1, 3, 224, 224)))
    assert feature.shape == (1, 272, 14, 14)


@pytest.mark.parametrize("antialias", [True, False])
def test_multiscale_resizes_each_level_and_keeps_channel_order(antialias):
    neck = MultiScaleConcat([2, 3, 1], [4, 8, 16], out_stride=8, antialias=antialias)
    levels = [torch.full((2, 2, 16, 16), 1.0), torch.full((2, 3, 8, 8), 2.0), torch.full((2, 1, 4, 4), 3.0)]
    out = neck(levels)
    assert out.shape == (2, 6, 8, 8)
    # Constant maps stay constant under bilinear resizing, so every channel keeps its level's value.
    expected = torch.tensor([1.0, 1.0, 2.0, 2.0, 2.0, 3.0]).view(1, 6, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected)


def test_multiscale_antialias_averages_when_downsampling():
    neck = MultiScaleConcat([1], [1], out_stride=4)
    level = torch.zeros(1, 1, 8, 8)
    level[..., 0, 0] = 16.0  # a one-pixel spike at the corner of the first 4×4 cell
    out = neck([level])
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 0, 0] > 0.5  # point sampling at the cell centres would miss the spike entirely


def test_multiscale_rejects_wrong_level_count_and_channels():
    neck = MultiScaleConcat([2, 3], [8, 16], out_stride=16)
    with pytest.raises(ValueError, match="expected 2 feature levels"):
        neck([torch.zeros(1, 2, 8, 8)])
    with pytest.raises(ValueError, match="expected 3 channels"):
        neck([torch.zeros(1, 2, 8, 8), torch.zeros(1, 4, 4, 4)])
