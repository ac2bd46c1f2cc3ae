import pytest
import torch
from torch import nn

from models.reconstructions.transformer import ReconstructionTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


def _small(**overrides):
    kwargs = dict(
        in_channels=12,
        feature_size=(3, 4),
        hidden_dim=16,
        num_heads=4,
        num_encoder_layers=2,
        num_decoder_layers=3,
        dim_feedforward=32,
        dropout=0.0,
    )
    kwargs.update(overrides)
    torch.manual_seed(0)
    return ReconstructionTransformer(**kwargs).eval()


def test_transformer_shapes_and_encoder_outputs():
    model = _small()
    rec, encoder_outputs = model(torch.randn(2, 12, 3, 4))
    assert rec.shape == (2, 12, 3, 4)
    assert len(encoder_outputs) == 2
    assert all(out.shape == (2, 12, 16) for out in encoder_outputs)


def test_transformer_ffn_out_layers_are_named_linears():
    model = _small()
    names = [name for name, module in model.named_modules() if name.endswith("ffn_out")]
    assert names == [
        "encoder.0.ffn_out",
        "encoder.1.ffn_out",
        "decoder.0.ffn_out",
        "decoder.1.ffn_out",
        "decoder.2.ffn_out",
    ]
    assert all(isinstance(model.get_submodule(name), nn.Linear) for name in names)


def test_transformer_output_starts_near_zero():
    model = _small()
    rec, _ = model(torch.randn(2, 12, 3, 4))
    assert rec.abs().max() < 0.05  # training starts from "reconstruct nothing", not from unit-scale noise


def test_transformer_condition_of_ones_equals_no_condition_and_others_change_output():
    model = _small()
    torch.nn.init.xavier_uniform_(model.output_proj.weight)  # the near-zero init would hide small differences
    feature = torch.randn(2, 12, 3, 4)
    plain, _ = model(feature)
    ones, _ = model(feature, [torch.ones(2, 12, 16)] * 2)
    torch.testing.assert_close(ones, plain)
    modulated, _ = model(feature, [torch.rand(2, 12, 16) * 3 for _ in range(2)])
    assert (modulated - plain).abs().max() > 1e-3


def test_transformer_condition_modulates_queries_not_values():
    model = _small()
    with torch.no_grad():
        model.pos_embed.zero_()
    feature = torch.randn(1, 12, 1, 1).expand(2, 12, 3, 4).contiguous()  # every token identical
    # Identical keys/values: attention returns the same value whatever the queries, so query modulation
    # cannot change the encoder; modulated values would.
    _, plain = model(feature)
    _, modulated = model(feature, [torch.rand(2, 12, 16) * 3 for _ in range(2)])
    torch.testing.assert_close(modulated[-1], plain[-1])


def test_transformer_gradients_reach_every_parameter():
    model = _small().train()
    rec, _ = model(torch.randn(2, 12, 3, 4), [torch.rand(2, 12, 16) for _ in range(2)])
    rec.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("feature_shape", "cond", "match"),
    [
        ((2, 11, 3, 4), None, "expected features"),
        ((2, 12, 4, 3), None, "expected features"),
        ((2, 12, 3, 4), [torch.ones(2, 12, 16)], "expected 2 condition"),
        ((2, 12, 3, 4), [torch.ones(2, 12, 8)] * 2, "condition 0"),
    ],
)
def test_transformer_rejects_bad_shapes(feature_shape, cond, match):
    with pytest.raises(ValueError, match=match):
        _small()(torch.zeros(feature_shape), cond)


def test_transformer_rejects_head_count_not_dividing_width():
    with pytest.raises(ValueError, match="divisible"):
        _small(num_heads=5)
