import pytest
import torch

from models.jitter import feature_jitter

pytestmark = pytest.mark.usefixtures("one_thread")


def test_feature_jitter_noise_scales_with_token_norm():
    generator = torch.Generator().manual_seed(0)
    feature = torch.ones(4, 64, 8, 8)
    feature[:, :, :4] *= 10.0  # the upper half has 10× larger tokens
    noise = feature_jitter(feature, scale=2.0, prob=1.0, generator=generator) - feature
    # ε·(‖f‖/C)·scale: ‖f‖ = 8 (or 80), C = 64 → std 0.25 (or 2.5).
    torch.testing.assert_close(noise[:, :, 4:].std(), torch.tensor(0.25), atol=0.02, rtol=0)
    torch.testing.assert_close(noise[:, :, :4].std(), torch.tensor(2.5), atol=0.2, rtol=0)


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_feature_jitter_probability_applies_per_token(prob):
    generator = torch.Generator().manual_seed(1)
    feature = torch.randn(8, 16, 16, 16)
    changed = (feature_jitter(feature, 20.0, prob, generator=generator) != feature).any(dim=1)  # B×h×w
    assert abs(changed.float().mean().item() - prob) < 0.03


def test_feature_jitter_is_reproducible_with_generator_and_leaves_input_unchanged():
    feature = torch.randn(2, 8, 4, 4)
    copy = feature.clone()
    first = feature_jitter(feature, 20.0, 0.5, generator=torch.Generator().manual_seed(3))
    second = feature_jitter(feature, 20.0, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    assert torch.equal(feature, copy)


@pytest.mark.parametrize(
    ("shape", "scale", "prob"), [((2, 8, 4), 1.0, 1.0), ((1, 2, 2, 2), -1.0, 1.0), ((1, 2, 2, 2), 1.0, 1.5)]
)
def test_feature_jitter_rejects_bad_arguments(shape, scale, prob):
    with pytest.raises(ValueError):
        feature_jitter(torch.zeros(shape), scale, prob)
