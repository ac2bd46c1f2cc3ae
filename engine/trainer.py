"""Training of one incremental step (the same losses in the base and the incremental steps, Algorithm 1).

:func:`train_step` runs the epochs of one step: AdamW, gradient clipping, a per-epoch schedule,
the step's regularizer hooks, non-finite-loss checks, per-epoch reseeding (so a resumed step is
bit-identical on CPU), optional within-step checkpoints and optional model selection on held-out
training normals (never on test data).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from datasets import build_loader
from engine.checkpoint import save_checkpoint
from engine.regularizers import Regularizer
from utils.dist import get_rank, get_world_size, is_main_process
from utils.errors import IUMADError
from utils.optimizer import build_optimizer, build_scheduler
from utils.seeding import derive_seed, seed_everything

__all__ = ["TrainingError", "StepSpec", "StepTrainer", "train_step"]

LOGGER = logging.getLogger(__name__)


class TrainingError(IUMADError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


@dataclass
class StepSpec:
    """What one step trains.

    Attributes:
        index: step number (0 = base step).
        epochs: epochs of this step (``trainer.epochs`` or ``trainer.incremental_epochs``).
        train_set: training samples of the step's classes (raw or with cached features).
        val_set: held-out training normals for ``trainer.select: val`` (None otherwise).
        uses_cache: whether ``train_set`` yields cached backbone features.
        step_dir: ``<output>/step_<k>``.
    """

    index: int
    epochs: int
    train_set: Dataset
    val_set: Dataset | None
    uses_cache: bool
    step_dir: Path


def _forward(model: nn.Module, batch: dict[str, Any], device: torch.device, uses_cache: bool):
    image = batch["image"].to(device, non_blocking=True)
    depth = batch["depth"].to(device, non_blocking=True)
    class_ids = batch["class_id"].to(device, non_blocking=True)  # chooses the class adapters, when there are any
    if uses_cache:
        feats = {m: f.to(device, non_blocking=True) for m, f in batch["features"].items()}
        return model(image, depth, features=feats, class_ids=class_ids)
    return model(image, depth, class_ids=class_ids)


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


@torch.no_grad()
def _validation_loss(model: nn.Module, criterion, loader, device, uses_cache: bool) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        outputs = _forward(model, batch, device, uses_cache)
        losses = criterion(outputs, {"class_id": batch["class_id"].to(device)})
        total += losses.get("fusion", losses["total"]).item()
        count += 1
    model.train()
    return total / max(count, 1)


class StepTrainer:
    """The epochs of one step, each part a method: loaders, one epoch, model selection, within-step checkpoints.

    Args:
        model: the unwrapped model, trained in place.
        criterion: ``(outputs, batch) -> dict`` of named losses with ``total``.
        regularizer: already ``begin_step``-ed for this step.
        spec: what to train.
        cfg: the resolved config.
        device: this process's device.
        writer: TensorBoard writer on rank 0, else None.
        checkpoint_extra: ``() -> dict`` of run-level entries added to every within-step checkpoint.
    """

    def __init__(self, model: nn.Module, criterion, regularizer: Regularizer, spec: StepSpec, cfg: dict,
                 device: torch.device, writer, checkpoint_extra) -> None:
        self.model, self.criterion, self.regularizer, self.spec = model, criterion, regularizer, spec
        self.cfg, self.tcfg, self.device, self.writer = cfg, cfg["trainer"], device, writer
        self.checkpoint_extra = checkpoint_extra
        self.optimizer = build_optimizer(model, self.tcfg, spec.index)
        self.scheduler = build_scheduler(self.optimizer, self.tcfg["scheduler"], spec.epochs)
        self.start_epoch, self.best = 0, None

    def restore(self, resume: dict[str, Any]) -> None:
        """Continue from a ``last.pth`` payload: weights, optimizer, schedule, epoch, best so far."""
        self.model.load_state_dict(resume["model"])
        self.optimizer.load_state_dict(resume["optimizer"])
        self.scheduler.load_state_dict(resume["scheduler"])
        self.start_epoch, self.best = resume["epoch"], resume.get("best")
        LOGGER.info("step %d: resumed at epoch %d/%d", self.spec.index, self.start_epoch, self.spec.epochs)

    def _train_loader(self):
        dcfg, world = self.cfg["dataset"], get_world_size()
        return build_loader(
            self.spec.train_set,
            batch_size=max(1, dcfg["batch_size"] // world),  # dataset.batch_size is the global batch
            workers=0 if self.spec.uses_cache else dcfg["workers"],
            shuffle=True,
            seed=derive_seed(self.cfg["seed"], "step", self.spec.index),
            distributed=world > 1,
            drop_last=len(self.spec.train_set) >= 2 * dcfg["batch_size"],
        )

    def _seed_epoch(self, loader, epoch: int) -> None:
        seed, step = self.cfg["seed"], self.spec.index
        seed_everything(derive_seed(seed, "epoch", step, epoch, get_rank()))
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        if hasattr(loader, "generator") and loader.generator is not None:
            loader.generator.manual_seed(derive_seed(seed, "shuffle", step, epoch))

    def _train_epoch(self, net: nn.Module, loader, epoch: int) -> dict[str, float]:
        """One pass over the loader; returns the mean of every loss term."""
        spec, sums = self.spec, {}
        bar = tqdm(loader, desc=f"step {spec.index} epoch {epoch + 1}/{spec.epochs}", leave=False,
                   disable=not is_main_process())
        for iteration, batch in enumerate(bar):
            outputs = _forward(net, batch, self.device, spec.uses_cache)
            losses = self.criterion(outputs, {"class_id": batch["class_id"].to(self.device)})
            _check_finite(losses, spec.index, epoch, iteration)
            self.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            self.regularizer.before_optimizer_step(self.model)
            if self.tcfg["clip_grad_norm"]:
                trainable = [p for p in self.model.parameters() if p.requires_grad]
                nn.utils.clip_grad_norm_(trainable, self.tcfg["clip_grad_norm"])
            self.optimizer.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.item()
            bar.set_postfix({k: f"{v / (iteration + 1):.4f}" for k, v in sums.items()})
        return {k: v / max(len(loader), 1) for k, v in sums.items()}

    def _select(self, val_loader, epoch: int) -> None:
        """Keep this epoch's weights when their held-out loss is the lowest so far (``trainer.select: val``)."""
        val_loss = _validation_loss(self.model, self.criterion, val_loader, self.device, self.spec.uses_cache)
        if self.best is None or val_loss < self.best["loss"]:
            self.best = {"loss": val_loss, "epoch": epoch + 1, "model": copy.deepcopy(self.model.state_dict())}

    def _save_last(self, epoch: int) -> None:
        """``last.pth`` every ``trainer.save_every_epochs`` epochs (not after the last: ``ckpt.pth`` follows)."""
        every = self.tcfg["save_every_epochs"]
        if every and (epoch + 1) % every == 0 and epoch + 1 < self.spec.epochs and is_main_process():
            save_checkpoint(
                self.spec.step_dir / "last.pth",
                {**self.checkpoint_extra(), "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "epoch": epoch + 1, "best": self.best},
            )

    def run(self) -> None:
        """Train the remaining epochs; end on the selected epoch's weights under ``trainer.select: val``."""
        model, spec = self.model, self.spec
        net = DistributedDataParallel(model, find_unused_parameters=True) if get_world_size() > 1 else model
        loader = self._train_loader()
        val_loader = None
        if spec.val_set is not None:
            val_loader = build_loader(spec.val_set, self.cfg["dataset"]["eval_batch_size"], 0, shuffle=False, seed=0)
        model.train()
        for epoch in range(self.start_epoch, spec.epochs):
            self._seed_epoch(loader, epoch)
            means = self._train_epoch(net, loader, epoch)
            self.scheduler.step()
            self.regularizer.after_epoch(model)
            _log_epoch(self.writer, spec, epoch, means, self.optimizer.param_groups[0]["lr"])
            if val_loader is not None:
                self._select(val_loader, epoch)
            self._save_last(epoch)
        if self.best is not None:
            LOGGER.info("step %d: selected epoch %d by held-out training normals (loss %.5f)",
                        spec.index, self.best["epoch"], self.best["loss"])
            model.load_state_dict(self.best["model"])


def train_step(
    model: nn.Module,
    criterion,
    regularizer: Regularizer,
    spec: StepSpec,
    cfg: dict,
    device: torch.device,
    writer,
    resume: dict[str, Any] | None,
    checkpoint_extra,
) -> None:
    """Train ``model`` (unwrapped) for one step, in place, with a :class:`StepTrainer` (``resume``: ``last.pth``)."""
    trainer = StepTrainer(model, criterion, regularizer, spec, cfg, device, writer, checkpoint_extra)
    if resume is not None:
        trainer.restore(resume)
    trainer.run()


def _log_epoch(writer, spec: StepSpec, epoch: int, means: dict[str, float], lr: float) -> None:
    if not is_main_process():
        return
    text = " ".join(f"{k}={v:.5f}" for k, v in means.items())
    LOGGER.info("step %d epoch %d/%d lr=%.2e %s", spec.index, epoch + 1, spec.epochs, lr, text)
    if writer is not None:
        for name, value in means.items():
            if math.isfinite(value):
                writer.add_scalar(f"step_{spec.index}/loss/{name}", value, epoch)
        writer.add_scalar(f"step_{spec.index}/lr", lr, epoch)
