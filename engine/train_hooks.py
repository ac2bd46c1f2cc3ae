"""The step trainer's standard hooks: console/TensorBoard logging, model selection, ``last.pth``, drift.

Model selection uses held-out *training* normals only (never test data).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from datasets import build_loader
from engine.batch import forward_batch
from engine.checkpoint import save_checkpoint
from engine.hooks import HookBase, StepContext
from utils.dist import is_main_process

__all__ = ["EpochLogger", "ModelSelection", "PeriodicCheckpoint", "StepDrift"]

LOGGER = logging.getLogger("engine.trainer")


class EpochLogger(HookBase):
    """One log line and TensorBoard scalars per epoch: every loss term's epoch mean and the lr (rank 0)."""

    def after_epoch(self, ctx: StepContext) -> None:  # noqa: D102
        if not is_main_process():
            return
        spec, lr = ctx.spec, ctx.optimizer.param_groups[0]["lr"]
        text = " ".join(f"{k}={v:.5f}" for k, v in ctx.epoch_means.items())
        LOGGER.info("step %d epoch %d/%d lr=%.2e %s", spec.index, ctx.epoch + 1, spec.epochs, lr, text)
        if ctx.writer is not None:
            for name, value in ctx.epoch_means.items():
                if math.isfinite(value):
                    ctx.writer.add_scalar(f"step_{spec.index}/loss/{name}", value, ctx.epoch)
            ctx.writer.add_scalar(f"step_{spec.index}/lr", lr, ctx.epoch)


class ModelSelection(HookBase):
    """``trainer.select: val``: keep the epoch whose held-out training normals have the lowest loss; end on it."""

    def __init__(self, criterion) -> None:
        self.criterion = criterion
        self.best: dict[str, Any] | None = None

    @torch.no_grad()
    def _validation_loss(self, ctx: StepContext) -> float:
        loader = build_loader(ctx.spec.val_set, ctx.cfg["dataset"]["eval_batch_size"], 0, shuffle=False, seed=0)
        ctx.model.eval()
        total, count = 0.0, 0
        for batch in loader:
            outputs = forward_batch(ctx.model, batch, ctx.device, ctx.spec.uses_cache, ctx.cfg["trainer"]["precision"])
            losses = self.criterion(outputs, {"class_id": batch["class_id"]})
            total += losses.get("fusion", losses["total"]).item()
            count += 1
        ctx.model.train()
        return total / max(count, 1)

    def after_epoch(self, ctx: StepContext) -> None:  # noqa: D102
        if ctx.spec.val_set is None:
            return
        loss = self._validation_loss(ctx)
        if self.best is None or loss < self.best["loss"]:
            self.best = {"loss": loss, "epoch": ctx.epoch + 1, "model": copy.deepcopy(ctx.model.state_dict())}

    def after_step(self, ctx: StepContext) -> None:  # noqa: D102
        if self.best is not None:
            LOGGER.info("step %d: selected epoch %d by held-out training normals (loss %.5f)",
                        ctx.spec.index, self.best["epoch"], self.best["loss"])
            ctx.model.load_state_dict(self.best["model"])

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"best": self.best} if self.best is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: D102
        self.best = state.get("best")


class PeriodicCheckpoint(HookBase):
    """``last.pth`` every ``trainer.save_every_epochs`` epochs (not after the last: the step's ``ckpt.pth`` follows).

    Args:
        path: the file (:meth:`engine.step_checkpoints.StepCheckpoints.last`).
        hooks: every hook of the step; their :meth:`~engine.hooks.HookBase.state_dict` is saved with it.
        run_entries: ``() -> dict`` of run-level entries (classes, strategy state, config) added to the file.
    """

    def __init__(self, path: Path, hooks: list[HookBase], run_entries: Callable[[], dict[str, Any]]) -> None:
        self.path, self.hooks, self.run_entries = path, hooks, run_entries

    def after_epoch(self, ctx: StepContext) -> None:  # noqa: D102
        every, done = ctx.cfg["trainer"]["save_every_epochs"], ctx.epoch + 1
        if not every or done % every or done >= ctx.spec.epochs or not is_main_process():
            return
        states = {type(h).__name__: h.state_dict() for h in self.hooks}
        save_checkpoint(
            self.path,
            {**self.run_entries(), "model": ctx.model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
             "scheduler": ctx.scheduler.state_dict(), "epoch": done, "hooks": {k: v for k, v in states.items() if v}},
        )


class StepDrift(HookBase):
    """How far a step moved the weights: ``‖θ − θ_start‖₂`` over the parameters it trains (global L2).

    ``θ_start`` is where the step started (the previous step's final weights; the initialisation in step 0).
    After the step, :attr:`drift` holds the value, which the run logs and keeps in the step's record.
    """

    def __init__(self) -> None:
        self.start: dict[str, torch.Tensor] = {}
        self.drift: float | None = None

    def before_step(self, ctx: StepContext) -> None:  # noqa: D102
        self.start = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:  # noqa: D102
        params = dict(ctx.model.named_parameters())
        squares = sum(float((params[n].detach() - start).double().pow(2).sum()) for n, start in self.start.items())
        self.drift = math.sqrt(squares)
