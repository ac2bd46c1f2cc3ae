"""``incremental.regularizer.type: ema_pull``: θ ← α θ_old + (1 − α) θ after every epoch of an incremental step.

θ_old are the trainable parameters where the step started (the previous step's final weights). A
coarser sibling of ``iuf``'s per-iteration pull, kept because docs/synthetic3d.md (table 4b) measures it.
"""

from __future__ import annotations

import torch

from engine.hooks import StepContext
from engine.strategies.registry import Strategy, register_strategy
from utils.config import Field

__all__ = ["EpochPull"]


@register_strategy("ema_pull")
class EpochPull(Strategy):
    """Pull toward the step's start after every epoch of steps > 0.

    Args:
        alpha: the share α of the old weights in the pull.
    """

    OPTIONS = {"alpha": Field((int, float), 0.05, bounds=(0, 1))}

    def __init__(self, alpha: float) -> None:
        super().__init__(alpha=alpha)
        self.alpha = alpha
        self.old: dict[str, torch.Tensor] = {}

    def before_step(self, ctx: StepContext) -> None:  # noqa: D102
        params = ctx.model.named_parameters()
        self.old = {n: p.detach().clone() for n, p in params if p.requires_grad} if ctx.spec.index > 0 else {}

    @torch.no_grad()
    def after_epoch(self, ctx: StepContext) -> None:  # noqa: D102
        for name, param in ctx.model.named_parameters():
            old = self.old.get(name)
            if old is not None and old.shape == param.shape:
                param.mul_(1 - self.alpha).add_(old, alpha=self.alpha)
