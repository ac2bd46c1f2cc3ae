import math

import pytest
import torch
from torch import nn

from engine.regularizers import EMAPull, GradientProjection, NoRegularizer, build_regularizer


class TwoLayers(nn.Module):
    """A stand-in network with two layers named like the reconstruction transformer's FFN outputs."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.block = nn.Module()
        self.block.ffn_out = nn.Linear(width, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        return self.head(self.block.ffn_out(image))


def batches(rows: torch.Tensor, tokens: int = 4):
    """Each image = `tokens` copies of one row, so the token average is the row itself."""
    image = rows[:, None, :].expand(-1, tokens, -1).contiguous()
    yield {"image": image, "depth": image}


@pytest.mark.parametrize(("kind", "cls"), [("none", NoRegularizer), ("gradient_projection", GradientProjection),
                                           ("ema_pull", EMAPull)])
def test_build_regularizer_by_name(kind, cls):
    cfg = {"type": kind, "ema_alpha": 0.1, "gp_energy": 0.9, "gp_max_samples": 8}
    assert isinstance(build_regularizer(cfg), cls)


def test_gradient_projection_damps_old_directions_with_log_weights():
    torch.manual_seed(0)
    model = TwoLayers()
    reg = GradientProjection(energy=1.0, max_samples=100)
    # Old task: activations span e0 (strong) and e1 (weak) only; fewer samples than the width 6.
    rows = torch.zeros(3, 6)
    rows[0, 0], rows[1, 0], rows[2, 1] = 3.0, 2.0, 0.5
    reg.end_step(model, batches(rows), torch.device("cpu"))
    basis = reg.bases["block.ffn_out"]
    assert basis.shape == (6, 2)
    reg.begin_step(model, step=1)
    grad = torch.ones(3, 6)
    model.block.ffn_out.weight.grad = grad.clone()
    reg.before_optimizer_step(model)
    projected = model.block.ffn_out.weight.grad
    w1, w2 = math.log(2) / math.log(6), math.log(3) / math.log(6)
    assert torch.allclose(projected[:, 0], torch.full((3,), w1), atol=1e-5)  # dominant direction: scaled by w_1
    assert torch.allclose(projected[:, 1], torch.full((3,), w2), atol=1e-5)  # second direction: scaled by w_2
    assert torch.allclose(projected[:, 2:], grad[:, 2:])  # directions never seen: untouched


def test_gradient_projection_inactive_in_base_step_and_state_roundtrip():
    model = TwoLayers()
    reg = GradientProjection(energy=0.99, max_samples=10)
    reg.begin_step(model, step=0)
    model.block.ffn_out.weight.grad = torch.ones(3, 6)
    reg.before_optimizer_step(model)
    assert torch.equal(model.block.ffn_out.weight.grad, torch.ones(3, 6))
    reg.end_step(model, batches(torch.randn(4, 6)), torch.device("cpu"))
    other = GradientProjection(energy=0.99, max_samples=10)
    other.load_state_dict(reg.state_dict())
    assert torch.equal(other.bases["block.ffn_out"], reg.bases["block.ffn_out"])
    assert not model.block.ffn_out._forward_hooks  # every hook removed


def test_gradient_projection_merges_bases_across_steps():
    model = TwoLayers()
    reg = GradientProjection(energy=1.0, max_samples=10)
    reg.end_step(model, batches(torch.eye(6)[:1] * 2), torch.device("cpu"))
    reg.end_step(model, batches(torch.eye(6)[1:2]), torch.device("cpu"))
    basis = reg.bases["block.ffn_out"]
    assert basis.shape == (6, 2)
    assert torch.allclose((basis @ basis.T)[:2, :2], torch.eye(2), atol=1e-6)


def test_ema_pull_moves_toward_step_start():
    model = TwoLayers()
    reg = EMAPull(alpha=0.25)
    reg.begin_step(model, step=1)
    start = model.head.weight.detach().clone()
    with torch.no_grad():
        model.head.weight.add_(4.0)
    reg.after_epoch(model)
    assert torch.allclose(model.head.weight, start + 3.0)
    reg.begin_step(model, step=0)
    before = model.head.weight.detach().clone()
    reg.after_epoch(model)
    assert torch.equal(model.head.weight, before)
