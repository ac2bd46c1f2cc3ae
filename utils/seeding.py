"""Every seed a run derives from ``cfg["seed"]``, in one place (exact resume depends on them).

A killed and resumed step replays the same random stream because each of these is a function of
(seed, step, epoch, rank) only, never of what ran before in the process.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["SEED_PURPOSES", "derive_seed", "seed_everything"]

#: purpose → the seed it gets from (seed, step, epoch, rank).
SEED_PURPOSES = {
    "step": lambda seed, step, epoch, rank: seed + 1000 * step,  # a step's new class-head rows; its sampler
    "epoch": lambda seed, step, epoch, rank: seed + 1000 * step + 7919 * epoch + rank,  # jitter, dropout
    "shuffle": lambda seed, step, epoch, rank: seed + 1000 * step + epoch,  # the loader's order in an epoch
    "split": lambda seed, step, epoch, rank: seed + step,  # which training normals a step holds out
}


def derive_seed(seed: int, purpose: str, step: int = 0, epoch: int = 0, rank: int = 0) -> int:
    """The seed of ``purpose`` (a key of :data:`SEED_PURPOSES`) in step ``step``, epoch ``epoch``, on ``rank``."""
    if purpose not in SEED_PURPOSES:
        raise ValueError(f"unknown seed purpose {purpose!r}; known: {sorted(SEED_PURPOSES)}")
    return SEED_PURPOSES[purpose](seed, step, epoch, rank)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
