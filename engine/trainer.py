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


#: Iterations between two reads of the running loss sums (one device-to-host sync each, and the finiteness check).
READ_EVERY = 25


def _read_sums(sums: dict[str, torch.Tensor], first_bad: dict[str, torch.Tensor], step: int,
               epoch: int) -> dict[str, float]:
    """The running loss sums as floats, in one device-to-host transfer, after every rank checked that all were finite.

    ``first_bad`` holds, per term, the first iteration whose value was not finite (-1: none). A non-finite loss is
    so caught at the next read, before anything is saved (checkpoints follow the epoch's last read); every rank
    agrees first, so none is left waiting in all-reduce.
    """
    names = list(sums)
    firsts = torch.stack([first_bad[n] for n in names]).double()
    finite = (firsts < 0).all().double().reshape(1)
    if get_world_size() > 1:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    host = torch.cat([torch.stack([sums[n] for n in names]), firsts, finite]).tolist()
    if host[-1] == 1.0:
        return dict(zip(names, host[: len(names)]))
    bad = {n: int(i) for n, i in zip(names, host[len(names) : 2 * len(names)]) if i >= 0}
    if not bad:
        raise TrainingError(f"non-finite loss on another process at step {step}, epoch {epoch + 1}")
    name = min(bad, key=bad.get)
    raise TrainingError(
        f"non-finite loss '{name}' at step {step}, epoch {epoch + 1}, iteration {bad[name]}; training stopped and "
        "the last good checkpoint is kept (lower trainer.lr or check the data)"
    )


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
            workers=0 if getattr(spec.train_set, "samples", None) is not None else dcfg["workers"],  # in memory: 0
            pin_memory=self.ctx.device.type == "cuda",
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
        losses = self.criterion(ctx.outputs, {"class_id": batch["class_id"]}, trainable_only=True)  # CPU labels
        for hook in self.hooks:
            extra = hook.extra_losses(ctx)
            if extra:
                losses["total"] = losses["total"] + sum(extra.values())
                losses.update(extra)
        ctx.losses = losses
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
        """One pass over the loader; returns the mean of every loss term.

        The loss terms are summed on the device and read every :data:`READ_EVERY` iterations and at the end.
        """
        ctx, sums, first_bad, means = self.ctx, {}, {}, {}
        bar = tqdm(loader, desc=f"step {ctx.spec.index} epoch {ctx.epoch + 1}/{ctx.spec.epochs}", leave=False,
                   disable=not is_main_process())
        for iteration, batch in enumerate(bar):
            losses = self._iteration(net, batch, iteration)
            for name, value in losses.items():
                value = value.detach().double()
                sums[name] = sums.get(name, 0.0) + value
                first = first_bad.get(name, torch.full_like(value, -1.0))
                first_bad[name] = torch.where(~torch.isfinite(value) & (first < 0), float(iteration), first)
            if (iteration + 1) % READ_EVERY == 0 or iteration + 1 == len(loader):
                read = _read_sums(sums, first_bad, ctx.spec.index, ctx.epoch)
                means = {k: v / (iteration + 1) for k, v in read.items()}
                bar.set_postfix({k: f"{v:.4f}" for k, v in means.items()})
        return means

    def _distributed(self, model: nn.Module) -> DistributedDataParallel:
        """The DDP wrapper, searching for unused parameters only where there are some.

        Unused are the other classes' adapters (with class adapters) and a class head whose only loss term has
        weight 0; no buffer changes in training, so none is broadcast.
        """
        weights = getattr(self.criterion, "weights", {})
        head_unused = any(weights.get(term) == 0 for term in ("rgb_ce", "depth_ce", "ib"))
        unused = getattr(model, "router", None) is not None or head_unused
        return DistributedDataParallel(model, find_unused_parameters=unused, broadcast_buffers=False)

    def run(self) -> None:
        """Train the remaining epochs of the step, then run the hooks' ``after_step`` in reverse order."""
        ctx = self.ctx
        model = ctx.model
        net = self._distributed(model) if get_world_size() > 1 else model
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
