"""Optimizer and learning-rate schedule of a training step, built from the ``trainer`` config."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ProjectedSGD", "build_optimizer", "build_scheduler"]


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


class ProjectedSGD(torch.optim.Optimizer):
    """Plain SGD (no momentum, no weight decay) whose update of chosen parameters is projected first.

    For a parameter ``p`` with a projector ``P`` ``(d, d)``, ``d = p.shape[0]`` (the output side of a linear
    layer's weight ``(d, in)`` or bias ``(d,)``), the update is ``p ← p − lr · P · grad``; every other
    parameter gets ``p ← p − lr · grad``. The projectors are per-step constants kept on the parameters'
    device; they are not part of :meth:`state_dict` (their owner rebuilds them).

    Args:
        params: the parameters to train.
        lr: learning rate.
        projectors: parameter → ``(d, d)`` projector.
    """

    def __init__(self, params, lr: float, projectors: dict[torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__(params, {"lr": lr})
        self.projectors = dict(projectors or {})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                projector = self.projectors.get(param)
                if projector is not None:
                    update = (projector @ update.reshape(update.shape[0], -1)).reshape(update.shape)  # (d, ·)
                param.add_(update, alpha=-group["lr"])
        return loss


def build_scheduler(
    optimizer: torch.optim.Optimizer, sched_cfg: dict, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule of one step: ``step``, ``cosine`` or ``constant``.

    ``step`` multiplies the lr by ``gamma`` every ``step_epochs`` epochs of the step (the release's StepLR),
    or, when that is null, once at ``step_size_fraction`` of the step's epochs.
    """
    kind = sched_cfg["type"]
    if kind == "step":
        step_size = sched_cfg.get("step_epochs") or max(1, math.ceil(epochs * sched_cfg["step_size_fraction"]))
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=sched_cfg["gamma"])
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
