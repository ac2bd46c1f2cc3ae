"""The step's optimizer: base-step lr, the incremental lr after it."""

import pytest
from torch import nn

from utils.optimizer import build_optimizer

CFG = {"lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.999]}


@pytest.mark.parametrize(
    ("incremental_lr", "step", "expected"),
    [(None, 0, 1e-3), (None, 2, 1e-3), (5e-3, 0, 1e-3), (5e-3, 1, 5e-3)],
)
def test_learning_rate_of_each_step(incremental_lr, step, expected):
    layer = nn.Linear(2, 2)
    layer.bias.requires_grad_(False)
    optimizer = build_optimizer(layer, {**CFG, "incremental_lr": incremental_lr}, step)
    assert optimizer.param_groups[0]["lr"] == expected
    assert optimizer.param_groups[0]["params"] == [layer.weight]  # trainable parameters only
