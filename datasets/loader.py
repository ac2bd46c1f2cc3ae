"""Seeded data loaders, with a :class:`DistributedSampler` when training runs on several processes.

Reproducibility: the loader shuffles with its own seeded ``torch.Generator``; each worker seeds
``random`` and ``numpy`` from its torch seed (which PyTorch derives from that generator and the
worker id). With a sampler, call ``loader.sampler.set_epoch(epoch)`` at the start of every epoch
so each epoch gets a different, still seeded, order.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

__all__ = ["build_loader", "build_shard_loader", "seed_worker"]


def seed_worker(worker_id: int) -> None:
    """Seed ``random`` and ``numpy`` in a loader worker from its (already seeded) torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    shuffle: bool,
    seed: int,
    distributed: bool = False,
    drop_last: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """Build a seeded :class:`DataLoader`.

    Args:
        dataset: map-style dataset.
        batch_size: samples per batch (per process when distributed).
        workers: loader worker processes (0 = load in the main process).
        shuffle: shuffle the samples (through the sampler when distributed).
        seed: seed of the shuffling generator / sampler.
        distributed: split the samples across processes with a :class:`DistributedSampler`.
        drop_last: drop the last incomplete batch (and, when distributed, the samples that do not split evenly).
        num_replicas: number of processes; default: the process-group world size, or 1 without a process group.
        rank: this process's rank; default: the process-group rank, or 0 without a process group.
        pin_memory: page-locked batches, so ``.to(cuda, non_blocking=True)`` overlaps the copy (pass it on CUDA).

    Returns:
        The loader; ``loader.sampler`` is the :class:`DistributedSampler` when ``distributed``.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    sampler = None
    if distributed:
        initialised = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if initialised else 1
        if rank is None:
            rank = dist.get_rank() if initialised else 0
        sampler = DistributedSampler(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker,
        pin_memory=pin_memory,
    )


def build_shard_loader(
    dataset: Dataset, batch_size: int, workers: int, pin_memory: bool = False
) -> tuple[DataLoader, list[int]]:
    """This process's share of ``dataset`` for a pass without training (evaluation, statistics fits), in order.

    Rank ``r`` of ``w`` processes takes the samples ``r, r + w, r + 2w, ...``; nothing is shuffled or dropped,
    so the shares of all ranks together are every sample exactly once.

    Returns:
        The loader and the dataset indices of its samples, in the order it yields them.
    """
    initialised = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if initialised else (0, 1)
    indices = list(range(rank, len(dataset), world))
    loader = build_loader(Subset(dataset, indices), batch_size, workers, shuffle=False, seed=0, pin_memory=pin_memory)
    return loader, indices
