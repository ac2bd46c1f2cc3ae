"""Class-adapter isolation: in an incremental step only the new classes' adapters train.

Not a registered strategy: the run adds this hook whenever the model has class adapters
(``model.class_adapter_rank > 0``), first in the hook list, so parameters are frozen before any
strategy snapshots the trainable ones and before the optimizer is built.
"""

from __future__ import annotations

import logging

from engine.hooks import HookBase, StepContext
from models.class_adapters import train_only_class_adapters

__all__ = ["ClassAdapterIsolation"]

LOGGER = logging.getLogger(__name__)


class ClassAdapterIsolation(HookBase):
    """Freezes everything but the step's new classes' adapters in steps > 0 (the base step trains all)."""

    def before_step(self, ctx: StepContext) -> None:  # noqa: D102
        if ctx.spec.index == 0:
            return
        trainable = train_only_class_adapters(ctx.model, sorted(ctx.spec.class_ids))
        LOGGER.info("step %d trains only the new classes' adapters (%d parameters)", ctx.spec.index, trainable)
