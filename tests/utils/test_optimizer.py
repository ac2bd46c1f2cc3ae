"""The step's optimizer (base-step lr, the incremental lr after it) and the per-epoch schedules."""

import pytest
from torch import nn

from utils.optimizer import build_optimizer, build_scheduler

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


@pytest.mark.parametrize(
    ("schedule", "expected"),  # lr of epochs 0..4 of a 5-epoch step at base lr 1
    [
        ({"type": "step", "step_size_fraction": 0.8, "gamma": 0.1}, [1, 1, 1, 1, 0.1]),
        ({"type": "cosine"}, [1, 0.9045, 0.6545, 0.3455, 0.0955]),
        ({"type": "constant"}, [1, 1, 1, 1, 1]),
    ],
)
def test_schedules(schedule, expected):
    optimizer = build_optimizer(nn.Linear(2, 2), {**CFG, "lr": 1.0})
    scheduler = build_scheduler(optimizer, schedule, epochs=5)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx(expected, abs=1e-4)
