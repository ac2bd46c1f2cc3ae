import numpy as np
import pytest
import torch
from scipy import ndimage

from models.discriminator import Discriminator, gaussian_kernel1d, keep_on_region

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("sigma", "size"), [(4.0, 33), (1.0, 9), (0.6, 7)])
def test_gaussian_kernel_size_and_normalisation(sigma, size):
    kernel = gaussian_kernel1d(sigma)
    assert kernel.numel() == size
    torch.testing.assert_close(kernel.sum(), torch.tensor(1.0))
    assert torch.equal(kernel, kernel.flip(0))


def test_discriminator_smoothing_matches_scipy_gaussian_filter():
    pixel_map = torch.rand(1, 1, 40, 48, generator=torch.Generator().manual_seed(0))
    smoothed = Discriminator(sigma=4.0).smooth(pixel_map)
    reference = ndimage.gaussian_filter(pixel_map[0, 0].double().numpy(), sigma=4.0, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(smoothed[0, 0].numpy(), reference, atol=1e-5)


def test_discriminator_map_is_l2_error_and_score_is_max_of_pooled_map():
    feature = torch.zeros(1, 4, 2, 2)
    feature_rec = torch.zeros(1, 4, 2, 2)
    feature_rec[0, :, 1, 1] = torch.tensor([3.0, 4.0, 0.0, 0.0])  # error 5 at one cell, 0 elsewhere
    discriminator = Discriminator(sigma=0.0, pool_size=2)
    out = discriminator(feature_rec, feature, (2, 2))
    torch.testing.assert_close(out["anomaly_map"], torch.tensor([[[[0.0, 0.0], [0.0, 5.0]]]]))
    torch.testing.assert_close(out["image_score"], torch.tensor([1.25]))  # mean of the 2×2 window


def test_discriminator_per_modality_maps_use_channel_slices():
    feature = torch.zeros(2, 4, 2, 2)
    feature_rec = torch.zeros(2, 4, 2, 2)
    feature_rec[:, 0] = 3.0  # rgb error 3
    feature_rec[:, 3] = 4.0  # depth error 4
    out = Discriminator(sigma=1.0, pool_size=16)(feature_rec, feature, (8, 8), {"rgb": (0, 2), "depth": (2, 4)})
    assert out["anomaly_map"].shape == (2, 1, 8, 8)
    torch.testing.assert_close(out["anomaly_map_rgb"], torch.full((2, 1, 8, 8), 3.0))
    torch.testing.assert_close(out["anomaly_map_depth"], torch.full((2, 1, 8, 8), 4.0))
    torch.testing.assert_close(out["anomaly_map"], torch.full((2, 1, 8, 8), 5.0))
    torch.testing.assert_close(out["image_score_depth"], torch.full((2,), 4.0))


def test_discriminator_kernel_is_not_in_state_dict_and_has_no_parameters():
    discriminator = Discriminator()
    assert not discriminator.state_dict()
    assert not list(discriminator.parameters())


@pytest.mark.parametrize(
    ("kwargs", "split"), [(dict(sigma=-1.0), None), (dict(pool_size=0), None), ({}, {"rgb": (0, 9)})]
)
def test_discriminator_rejects_bad_arguments(kwargs, split):
    with pytest.raises(ValueError):
        Discriminator(**kwargs)(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), (4, 4), split)


def test_keep_on_region_sets_the_outside_to_each_maps_minimum():
    maps = torch.zeros(2, 1, 8, 8)
    maps[0, 0, 4, 1] = 5.0  # peak inside the left half
    maps[1, 0, 4, 6] = 5.0  # peak outside it
    maps[1, 0, 2, 2] = 1.0
    maps[1] -= 1.0  # map minimum -1
    region = torch.zeros(2, 1, 8, 8)
    region[..., :4] = 1.0
    kept = keep_on_region(maps, region)
    torch.testing.assert_close(kept[:, :, :, :4], maps[:, :, :, :4])
    assert kept[0, 0, :, 4:].eq(0.0).all() and kept[1, 0, :, 4:].eq(-1.0).all()
    scores = Discriminator(sigma=0.0, pool_size=1).image_score(kept)
    torch.testing.assert_close(scores, torch.tensor([5.0, 0.0]))
    torch.testing.assert_close(keep_on_region(maps, torch.ones_like(maps)), maps)
    with pytest.raises(ValueError, match="must have the map's shape"):
        keep_on_region(maps, region[:, :, :4])
