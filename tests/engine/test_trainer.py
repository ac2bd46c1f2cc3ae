"""The step trainer's loop: a non-finite loss stops it before anything is saved, naming the term."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.hooks import StepSpec
from engine.train_hooks import PeriodicCheckpoint
from engine.trainer import READ_EVERY, StepTrainer, TrainingError


class Line(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(1.0))

    def forward(self, inputs, features=None, class_ids=None, maps=True):
        return {"prediction": self.weight * inputs["rgb"].mean()}


class BreaksAt:
    """``total`` = a finite term, then NaN in ``bad`` from call ``at`` on."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, outputs, batch, trainable_only=False):
        self.calls += 1
        good = outputs["prediction"] ** 2
        bad = good * (float("nan") if self.calls >= self.at else 1.0)
        return {"good": good, "bad": bad, "total": good + bad}


@pytest.mark.parametrize("at", [2, READ_EVERY + 3])
def test_a_non_finite_loss_names_the_term_and_saves_nothing(tmp_path, at):
    samples = [{"inputs": {"rgb": torch.randn(2)}, "class_id": torch.tensor(0)}] * (2 * READ_EVERY)
    cfg = {"seed": 0, "dataset": {"batch_size": 1, "eval_batch_size": 1, "workers": 0},
           "trainer": {"lr": 1e-3, "incremental_lr": None, "weight_decay": 0.0, "betas": [0.9, 0.999],
                       "clip_grad_norm": None, "save_every_epochs": 1, "precision": "fp32",
                       "scheduler": {"type": "constant", "step_size_fraction": 0.8, "step_epochs": None, "gamma": 0.1}}}
    spec = StepSpec(0, 2, samples, None, False, tmp_path, [0])
    hooks = []
    hooks.append(PeriodicCheckpoint(tmp_path / "last.pth", hooks, dict))
    trainer = StepTrainer(Line(), BreaksAt(at), spec, cfg, torch.device("cpu"), hooks)
    with pytest.raises(TrainingError, match=f"non-finite loss 'bad' at step 0, epoch 1, iteration {at - 1};"):
        trainer.run()
    assert not (tmp_path / "last.pth").exists()
