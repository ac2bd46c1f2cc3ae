import pytest
import torch

from models.feature_norm import FeatureStandardizer


def _sums(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    flat = features.double().transpose(0, 1).flatten(1)  # B×C×h×w -> C×N
    return flat.sum(1), (flat**2).sum(1), flat.shape[1]


def test_feature_standardizer_maps_fitted_features_to_zero_mean_unit_std():
    torch.manual_seed(0)
    scales = torch.tensor([0.5, 1.0, 5.0])[None, :, None, None]
    features = {"rgb": torch.randn(6, 3, 4, 4) * scales + 3.0, "depth": torch.randn(6, 3, 4, 4) * 2.0 - 1.0}
    norm = FeatureStandardizer(["rgb", "depth"], 3)
    assert not bool(norm.fitted)
    stats = {m: _sums(f) for m, f in features.items()}
    norm.fit({m: s[0] for m, s in stats.items()}, {m: s[1] for m, s in stats.items()}, stats["rgb"][2])
    assert bool(norm.fitted)
    for modality, feature in features.items():
        standard = norm(modality, feature).transpose(0, 1).flatten(1)
        torch.testing.assert_close(standard.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(standard.std(1), torch.ones(3), atol=1e-4, rtol=0)


def test_feature_standardizer_floors_the_std_of_constant_channels():
    features = torch.cat([torch.full((4, 1, 2, 2), 7.0), torch.randn(4, 1, 2, 2)], dim=1)
    norm = FeatureStandardizer(["rgb"], 2, min_std_fraction=0.1)
    total, square, count = _sums(features)
    norm.fit({"rgb": total}, {"rgb": square}, count)
    assert float(norm.std_rgb[0]) == pytest.approx(0.1 * float(norm.std_rgb.mean()), rel=0.2)
    assert torch.isfinite(norm("rgb", features)).all()


def test_feature_standardizer_statistics_travel_in_the_state_dict():
    norm = FeatureStandardizer(["depth"], 2)
    norm.fit({"depth": torch.tensor([4.0, 8.0])}, {"depth": torch.tensor([10.0, 40.0])}, 2)
    loaded = FeatureStandardizer(["depth"], 2)
    loaded.load_state_dict(norm.state_dict())
    assert bool(loaded.fitted) and torch.equal(loaded.mean_depth, norm.mean_depth)


def test_feature_standardizer_refuses_fewer_than_two_vectors():
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStandardizer(["rgb"], 1).fit({"rgb": torch.ones(1)}, {"rgb": torch.ones(1)}, 1)
