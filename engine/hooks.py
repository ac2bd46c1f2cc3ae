"""The step trainer's hook interface: what runs around the closed training loop of one step.

The loop (:class:`engine.trainer.StepTrainer`) is

```
before_step → optimizer (a hook's build_optimizer, else AdamW) → restore (--resume)
for epoch:  before_epoch
            for batch:  before_iteration → forward → losses (+ extra_losses) → backward
                        → after_backward → clip → optimizer.step → after_iteration
            scheduler.step → after_epoch
after_step (in reverse hook order)
```

and every hook sees one :class:`StepContext`. A hook may supply the step's optimizer
(:meth:`HookBase.build_optimizer`; the first hook that returns one wins, else AdamW from
``trainer``) and add loss terms (:meth:`HookBase.extra_losses`). Incremental strategies
(:mod:`engine.strategies`), class-adapter isolation, model selection, checkpoints and logging are hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

__all__ = ["HookBase", "StepContext", "StepSpec"]


@dataclass
class StepSpec:
    """What one step trains.

    Attributes:
        index: step number (0 = base step).
        epochs: epochs of this step (the step entry's ``epochs``, else ``trainer.epochs`` / ``incremental_epochs``).
        train_set: training samples of the step's classes (raw or with cached features).
        val_set: held-out training normals for ``trainer.select: val`` (None otherwise).
        uses_cache: whether ``train_set`` yields cached backbone features.
        step_dir: ``<output>/step_<k>``.
        class_ids: the step's new classes' indices in the class heads.
    """

    index: int
    epochs: int
    train_set: Dataset
    val_set: Dataset | None
    uses_cache: bool
    step_dir: Path
    class_ids: list[int] = field(default_factory=list)


@dataclass
class StepContext:
    """Everything a hook may read (and, where said, change) during one step.

    Attributes:
        model: the unwrapped model, trained in place (never the DDP wrapper).
        spec: what the step trains.
        cfg: the resolved config.
        device: this process's device.
        optimizer: the step's optimizer (set after ``before_step``).
        scheduler: the step's per-epoch learning-rate schedule (set after ``before_step``).
        epoch: current epoch, 0-based.
        iteration: current iteration within the epoch, 0-based.
        batch: the current batch as the loader gave it (CPU tensors).
        outputs: the model's outputs of the current batch.
        losses: named 0-d loss terms of the current batch, with ``total``.
        epoch_means: mean of every loss term over the epoch just finished (``after_epoch``).
        start_epoch: first epoch this invocation trains (> 0 after ``--resume``).
        writer: TensorBoard writer on rank 0, else None.
    """

    model: nn.Module
    spec: StepSpec
    cfg: dict
    device: torch.device
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    epoch: int = 0
    iteration: int = 0
    batch: dict[str, Any] | None = None
    outputs: dict[str, Tensor] | None = None
    losses: dict[str, Tensor] | None = None
    epoch_means: dict[str, float] = field(default_factory=dict)
    start_epoch: int = 0
    writer: Any = None


class HookBase:
    """A part of the training of a step that is not the loop itself; every method does nothing by default."""

    def build_optimizer(self, ctx: StepContext) -> torch.optim.Optimizer | None:
        """The optimizer of this step, or None to leave it to the next hook (default: AdamW from ``trainer``)."""
        return None

    def before_step(self, ctx: StepContext) -> None:
        """Before anything trains: the weights are where the step starts (the previous step's, classes grown).

        Runs before the optimizer is built (so a hook may freeze parameters here) and before a ``--resume``
        restore (so a snapshot taken here is the step's start, also when resuming).
        """

    def before_epoch(self, ctx: StepContext) -> None:
        """Before every epoch."""

    def before_iteration(self, ctx: StepContext) -> None:
        """Before the forward pass of every iteration (``ctx.batch`` is set)."""

    def extra_losses(self, ctx: StepContext) -> dict[str, Tensor]:
        """Named 0-d loss terms added (weight 1) to ``total`` after the criterion's (``ctx.outputs`` is set)."""
        return {}

    def after_backward(self, ctx: StepContext) -> None:
        """After ``backward()`` (gradients final, also under DDP), before gradient clipping."""

    def after_iteration(self, ctx: StepContext) -> None:
        """After the optimizer step."""

    def after_epoch(self, ctx: StepContext) -> None:
        """After every epoch and its scheduler step (``ctx.epoch_means`` is set)."""

    def after_step(self, ctx: StepContext) -> None:
        """After the last epoch; hooks run here in reverse order, so the model selected by a later hook is final."""

    def state_dict(self) -> dict[str, Any]:
        """What must survive ``--resume`` within the step (saved in ``last.pth`` under the hook's class name)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
