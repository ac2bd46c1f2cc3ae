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
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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

__all__ = ["TrainingError", "StepSpec", "train_step", "seed_everything"]

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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _forward(model: nn.Module, batch: dict[str, Any], device: torch.device, uses_cache: bool, hflip: float):
    image = batch["image"].to(device, non_blocking=True)
    depth = batch["depth"].to(device, non_blocking=True)
    if hflip > 0:
        flip = torch.rand(image.shape[0], device=device) < hflip
        image = torch.where(flip[:, None, None, None], image.flip(-1), image)
        depth = torch.where(flip[:, None, None, None], depth.flip(-1), depth)
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
        outputs = _forward(model, batch, device, uses_cache, 0.0)
        losses = criterion(outputs, {"class_id": batch["class_id"].to(device)})
        total += losses.get("fusion", losses["total"]).item()
        count += 1
    model.train()
    return total / max(count, 1)


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
    """Train ``model`` (unwrapped) for one step, in place.

    Args:
        criterion: ``(outputs, batch) -> dict`` of named losses with ``total``.
        regularizer: already ``begin_step``-ed for this step.
        spec: what to train.
        cfg: the resolved config.
        writer: TensorBoard writer on rank 0, else None.
        resume: a ``last.pth`` payload to continue from, or None.
        checkpoint_extra: ``() -> dict`` of run-level entries added to every within-step checkpoint.
    """
    tcfg = cfg["trainer"]
    optimizer = build_optimizer(model, tcfg, spec.index)
    scheduler = build_scheduler(optimizer, tcfg["scheduler"], spec.epochs)
    start_epoch, best = 0, None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        start_epoch, best = resume["epoch"], resume.get("best")
        LOGGER.info("step %d: resumed at epoch %d/%d", spec.index, start_epoch, spec.epochs)
    world = get_world_size()
    net = DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model
    dcfg = cfg["dataset"]
    per_rank_batch = max(1, dcfg["batch_size"] // world)  # dataset.batch_size is the global batch
    loader = build_loader(
        spec.train_set,
        batch_size=per_rank_batch,
        workers=0 if spec.uses_cache else dcfg["workers"],
        shuffle=True,
        seed=cfg["seed"] + 1000 * spec.index,
        distributed=world > 1,
        drop_last=len(spec.train_set) >= 2 * dcfg["batch_size"],
    )
    val_loader = None
    if spec.val_set is not None:
        val_loader = build_loader(spec.val_set, dcfg["eval_batch_size"], 0, shuffle=False, seed=0)
    model.train()
    for epoch in range(start_epoch, spec.epochs):
        seed_everything(cfg["seed"] + 1000 * spec.index + 7919 * epoch + get_rank())
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        if hasattr(loader, "generator") and loader.generator is not None:
            loader.generator.manual_seed(cfg["seed"] + 1000 * spec.index + epoch)
        sums: dict[str, float] = {}
        bar = tqdm(loader, desc=f"step {spec.index} epoch {epoch + 1}/{spec.epochs}", leave=False,
                   disable=not is_main_process())
        for iteration, batch in enumerate(bar):
            outputs = _forward(net, batch, device, spec.uses_cache, tcfg["hflip_prob"])
            losses = criterion(outputs, {"class_id": batch["class_id"].to(device)})
            _check_finite(losses, spec.index, epoch, iteration)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            regularizer.before_optimizer_step(model)
            if tcfg["clip_grad_norm"]:
                nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], tcfg["clip_grad_norm"])
            optimizer.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.item()
            bar.set_postfix({k: f"{v / (iteration + 1):.4f}" for k, v in sums.items()})
        scheduler.step()
        regularizer.after_epoch(model)
        means = {k: v / max(len(loader), 1) for k, v in sums.items()}
        _log_epoch(writer, spec, epoch, means, optimizer.param_groups[0]["lr"])
        if val_loader is not None:
            val_loss = _validation_loss(model, criterion, val_loader, device, spec.uses_cache)
            if best is None or val_loss < best["loss"]:
                best = {"loss": val_loss, "epoch": epoch + 1, "model": copy.deepcopy(model.state_dict())}
        every = tcfg["save_every_epochs"]
        if every and (epoch + 1) % every == 0 and epoch + 1 < spec.epochs and is_main_process():
            save_checkpoint(
                spec.step_dir / "last.pth",
                {**checkpoint_extra(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "best": best},
            )
    if best is not None:
        LOGGER.info("step %d: selected epoch %d by held-out training normals (loss %.5f)",
                    spec.index, best["epoch"], best["loss"])
        model.load_state_dict(best["model"])


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
