"""Optimizer and learning-rate schedule of a training step, built from the ``trainer`` config."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(model: nn.Module, trainer_cfg: dict, step: int = 0) -> torch.optim.AdamW:
    """AdamW over the trainable parameters with the step's lr, weight decay and betas.

    The lr is ``trainer.lr`` in the base step (``step`` 0) and ``trainer.incremental_lr`` (when set) after it.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    incremental_lr = trainer_cfg.get("incremental_lr")
    return torch.optim.AdamW(
        params,
        lr=incremental_lr if step > 0 and incremental_lr is not None else trainer_cfg["lr"],
        weight_decay=trainer_cfg["weight_decay"],
        betas=tuple(trainer_cfg["betas"]),
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, sched_cfg: dict, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: ``step`` (×gamma at ``step_size_fraction`` of the epochs), ``cosine``, ``constant``."""
    kind = sched_cfg["type"]
    if kind == "step":
        step_size = max(1, math.ceil(epochs * sched_cfg["step_size_fraction"]))
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=sched_cfg["gamma"])
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
