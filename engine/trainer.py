"""Training of one incremental step: a small closed loop; everything around it is a hook (:mod:`engine.hooks`).

:class:`StepTrainer` runs the epochs of one step: the optimizer (a hook's, else AdamW), the per-epoch
schedule, forward, the criterion plus the hooks' loss terms, non-finite-loss checks, backward,
gradient clipping, the optimizer step, and per-epoch reseeding (so a resumed step is bit-identical on
CPU). Model selection, checkpoints, logging and incremental strategies are hooks
(:mod:`engine.train_hooks`, :mod:`engine.strategies`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from datasets import build_loader
from engine.batch import forward_batch
from engine.hooks import HookBase, StepContext, StepSpec
from utils.dist import get_rank, get_world_size, is_main_process
from utils.errors import IUMADError
from utils.optimizer import build_optimizer, build_scheduler
from utils.seeding import derive_seed, seed_everything

__all__ = ["TrainingError", "StepSpec", "StepTrainer"]

LOGGER = logging.getLogger(__name__)


class TrainingError(IUMADError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


def _check_finite(losses: dict[str, torch.Tensor], step: int, epoch: int, iteration: int) -> None:
    """Raise on a non-finite loss term; every rank agrees first, so no rank is left waiting in all-reduce."""
    finite = torch.stack([torch.isfinite(v).all() for v in losses.values()]).all()
    if get_world_size() > 1:
        flag = finite.to(torch.int32).reshape(1)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        finite = bool(flag.item())
    if finite:
        return
    for name, value in losses.items():
        if not torch.isfinite(value).all():
            raise TrainingError(
                f"non-finite loss '{name}' = {value.item()} at step {step}, epoch {epoch + 1}, iteration {iteration}; "
                "training stopped and the last good checkpoint is kept (lower trainer.lr or check the data)"
            )
    raise TrainingError(f"non-finite loss on another process at step {step}, epoch {epoch + 1}, iteration {iteration}")


class StepTrainer:
    """The epochs of one step over a list of hooks.

    Args:
        model: the unwrapped model, trained in place.
        criterion: ``(outputs, batch, trainable_only) -> dict`` of named losses with ``total``
            (:class:`utils.criterion_helper.Criterion`; ``trainable_only``: leave out terms that train nothing).
        spec: what to train.
        cfg: the resolved config.
        device: this process's device.
        hooks: called in this order (``after_step`` in reverse); see :mod:`engine.hooks`.
        writer: TensorBoard writer on rank 0, else None.
    """

    def __init__(self, model: nn.Module, criterion, spec: StepSpec, cfg: dict, device: torch.device,
                 hooks: Sequence[HookBase], writer=None) -> None:
        self.criterion, self.hooks, self.tcfg = criterion, list(hooks), cfg["trainer"]
        self.ctx = StepContext(model=model, spec=spec, cfg=cfg, device=device, writer=writer)
        for hook in self.hooks:
            hook.before_step(self.ctx)
        optimizer = next((o for o in (h.build_optimizer(self.ctx) for h in self.hooks) if o is not None), None)
        self.ctx.optimizer = optimizer or build_optimizer(model, self.tcfg, spec.index)
        self.ctx.scheduler = build_scheduler(self.ctx.optimizer, self.tcfg["scheduler"], spec.epochs)

    def restore(self, resume: dict[str, Any]) -> None:
        """Continue from a ``last.pth`` payload: weights, optimizer, schedule, epoch, the hooks' states."""
        ctx = self.ctx
        ctx.model.load_state_dict(resume["model"])
        ctx.optimizer.load_state_dict(resume["optimizer"])
        ctx.scheduler.load_state_dict(resume["scheduler"])
        ctx.start_epoch = resume["epoch"]
        for hook in self.hooks:
            hook.load_state_dict(resume.get("hooks", {}).get(type(hook).__name__, {}))
        LOGGER.info("step %d: resumed at epoch %d/%d", ctx.spec.index, ctx.start_epoch, ctx.spec.epochs)

    def _train_loader(self):
        cfg, spec, world = self.ctx.cfg, self.ctx.spec, get_world_size()
        dcfg = cfg["dataset"]
        return build_loader(
            spec.train_set,
            batch_size=max(1, dcfg["batch_size"] // world),  # dataset.batch_size is the global batch
            workers=0 if spec.uses_cache else dcfg["workers"],
            shuffle=True,
            seed=derive_seed(cfg["seed"], "step", spec.index),
            distributed=world > 1,
            drop_last=len(spec.train_set) >= 2 * dcfg["batch_size"],
        )

    def _seed_epoch(self, loader, epoch: int) -> None:
        seed, step = self.ctx.cfg["seed"], self.ctx.spec.index
        seed_everything(derive_seed(seed, "epoch", step, epoch, get_rank()))
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        if hasattr(loader, "generator") and loader.generator is not None:
            loader.generator.manual_seed(derive_seed(seed, "shuffle", step, epoch))

    def _iteration(self, net: nn.Module, batch: dict[str, Any], iteration: int) -> dict[str, torch.Tensor]:
        """One optimisation step on ``batch``; returns its loss terms."""
        ctx = self.ctx
        ctx.batch, ctx.iteration = batch, iteration
        for hook in self.hooks:
            hook.before_iteration(ctx)
        ctx.outputs = forward_batch(net, batch, ctx.device, ctx.spec.uses_cache, self.tcfg["precision"])
        losses = self.criterion(ctx.outputs, {"class_id": batch["class_id"].to(ctx.device)}, trainable_only=True)
        for hook in self.hooks:
            extra = hook.extra_losses(ctx)
            if extra:
                losses["total"] = losses["total"] + sum(extra.values())
                losses.update(extra)
        ctx.losses = losses
        _check_finite(losses, ctx.spec.index, ctx.epoch, iteration)
        ctx.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        for hook in self.hooks:
            hook.after_backward(ctx)
        if self.tcfg["clip_grad_norm"]:
            trainable = [p for p in ctx.model.parameters() if p.requires_grad]
            nn.utils.clip_grad_norm_(trainable, self.tcfg["clip_grad_norm"])
        ctx.optimizer.step()
        for hook in self.hooks:
            hook.after_iteration(ctx)
        return losses

    def _train_epoch(self, net: nn.Module, loader) -> dict[str, float]:
        """One pass over the loader; returns the mean of every loss term."""
        ctx, sums = self.ctx, {}
        bar = tqdm(loader, desc=f"step {ctx.spec.index} epoch {ctx.epoch + 1}/{ctx.spec.epochs}", leave=False,
                   disable=not is_main_process())
        for iteration, batch in enumerate(bar):
            losses = self._iteration(net, batch, iteration)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.item()
            bar.set_postfix({k: f"{v / (iteration + 1):.4f}" for k, v in sums.items()})
        return {k: v / max(len(loader), 1) for k, v in sums.items()}

    def run(self) -> None:
        """Train the remaining epochs of the step, then run the hooks' ``after_step`` in reverse order."""
        ctx = self.ctx
        model = ctx.model
        net = DistributedDataParallel(model, find_unused_parameters=True) if get_world_size() > 1 else model
        loader = self._train_loader()
        model.train()
        for epoch in range(ctx.start_epoch, ctx.spec.epochs):
            ctx.epoch = epoch
            self._seed_epoch(loader, epoch)
            for hook in self.hooks:
                hook.before_epoch(ctx)
            ctx.epoch_means = self._train_epoch(net, loader)
            ctx.scheduler.step()
            for hook in self.hooks:
                hook.after_epoch(ctx)
        for hook in reversed(self.hooks):
            hook.after_step(ctx)
