"""Conditioners (MambaDecoder, ViTConditioner): shapes, maps centred at 1, gradients, argument checks."""

import pytest
import torch

from models.classifier import GrowingClassifier
from models.conditioners import ViTConditioner
from models.mamba import MambaDecoder
from utils.errors import ConfigError

SMALL = {"embed_dim": 16, "num_heads": 2}
CONDITIONERS = {
    "mamba": (MambaDecoder, {**SMALL, "d_state": 4}),
    "vit": (ViTConditioner, SMALL),
}


def build(kind, modalities=("rgb", "depth"), image_size=64, num_cond_layers=2, num_classes=3, **extra):
    cls, kwargs = CONDITIONERS[kind]
    return cls(
        modalities=list(modalities),
        image_size=image_size,
        patch_size=16,
        cond_dim=8,
        num_cond_layers=num_cond_layers,
        num_classes=num_classes,
        **{**kwargs, **extra},
    )


@pytest.mark.parametrize("kind", sorted(CONDITIONERS))
@pytest.mark.parametrize(("modalities", "image_size"), [(("rgb", "depth"), 64), (("rgb",), 32), (("depth",), 48)])
def test_conditioner_output_shapes(kind, modalities, image_size):
    torch.manual_seed(0)
    model = build(kind, modalities, image_size=image_size)
    images = {m: torch.randn(2, 3, image_size, image_size) for m in ("rgb", "depth")}
    out = model(images)
    tokens = (image_size // 16) ** 2
    assert set(out) == {"cond", "logits"}
    assert set(out["cond"]) == set(out["logits"]) == set(modalities)
    for name in modalities:
        maps = out["cond"][name]
        assert len(maps) == 2
        for m in maps:
            assert m.shape == (2, tokens, 8)
            assert (m > 0).all() and (m < 2).all()
        assert out["logits"][name].shape == (2, 3)


@pytest.mark.parametrize("kind", sorted(CONDITIONERS))
def test_conditioner_maps_start_near_one(kind):
    torch.manual_seed(0)
    model = build(kind)
    out = model({m: torch.randn(2, 3, 64, 64) for m in ("rgb", "depth")})
    for maps in out["cond"].values():
        for m in maps:
            assert (m - 1).abs().max() < 0.5


@pytest.mark.parametrize("kind", sorted(CONDITIONERS))
def test_conditioner_gradient_reaches_every_parameter(kind):
    torch.manual_seed(0)
    model = build(kind)
    out = model({m: torch.randn(2, 3, 64, 64) for m in ("rgb", "depth")})
    loss = sum(m.square().mean() for maps in out["cond"].values() for m in maps)
    loss = loss + sum(logits.logsumexp(-1).mean() for logits in out["logits"].values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


@pytest.mark.parametrize("kind", sorted(CONDITIONERS))
def test_conditioner_modalities_have_separate_weights_and_heads(kind):
    model = build(kind)
    heads = [m for m in model.modules() if isinstance(m, GrowingClassifier)]
    assert len(heads) == 2 and heads[0].weight is not heads[1].weight
    rgb = {id(p) for p in model.branches["rgb"].parameters()}
    depth = {id(p) for p in model.branches["depth"].parameters()}
    assert rgb.isdisjoint(depth)
    for head in heads:
        head.grow(5)
    assert model.num_classes == 5
    out = model({m: torch.randn(1, 3, 64, 64) for m in ("rgb", "depth")})
    assert out["logits"]["rgb"].shape == (1, 5)


@pytest.mark.parametrize("kind", sorted(CONDITIONERS))
def test_conditioner_num_layers_must_match_cond_layers(kind):
    out = build(kind, num_cond_layers=3)({m: torch.randn(1, 3, 64, 64) for m in ("rgb", "depth")})
    assert len(out["cond"]["rgb"]) == len(out["cond"]["depth"]) == 3
    with pytest.raises(ConfigError, match="num_layers=2 .*num_encoder_layers=3"):
        build(kind, num_cond_layers=3, num_layers=2)


@pytest.mark.parametrize("kind", sorted(CONDITIONERS))
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 60}, "multiple of patch_size"),
        ({"modalities": ()}, "non-empty"),
        ({"modalities": ("rgb", "rgb")}, "distinct"),
    ],
)
def test_conditioner_rejects_bad_arguments(kind, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build(kind, **kwargs)


@pytest.mark.parametrize("kind", sorted(CONDITIONERS))
def test_conditioner_rejects_missing_or_misshaped_images(kind):
    model = build(kind)
    with pytest.raises(ValueError, match="no 'depth' image"):
        model({"rgb": torch.randn(1, 3, 64, 64)})
    with pytest.raises(ValueError, match=r"expected \(B, 3, 64, 64\)"):
        model({"rgb": torch.randn(1, 3, 32, 32), "depth": torch.randn(1, 3, 64, 64)})


def test_mamba_decoder_odd_grid_runs():
    torch.manual_seed(0)
    model = build("mamba", ("rgb",), image_size=48)  # 3x3 grid: ES2D pads to 4x4 and crops
    out = model({"rgb": torch.randn(1, 3, 48, 48)})
    assert out["cond"]["rgb"][0].shape == (1, 9, 8)
