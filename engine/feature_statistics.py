"""Fit the per-channel feature standardisation (``model.feature_norm: standardize``) on training normals.

Run once, before the base step trains: every rank sums the raw features of its shard of the training
set, the sums are all-reduced, and the model's :class:`~models.feature_norm.FeatureStandardizer` gets
the statistics. Later steps keep them (see :mod:`models.feature_norm`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from datasets import build_loader
from utils.dist import get_rank, get_world_size

__all__ = ["fit_feature_standardizer"]

LOGGER = logging.getLogger(__name__)


@torch.no_grad()
def fit_feature_standardizer(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int, uses_cache: bool
) -> None:
    """Set ``model.feature_norm``'s statistics from the raw features of ``dataset``.

    A no-op when the model has no ``feature_norm`` or it is already fitted (a later step, a loaded checkpoint).

    Args:
        model: the (unwrapped) IB-IUMAD model.
        dataset: training samples (raw, or with cached ``features`` when ``uses_cache``).
        device: this process's device.
        batch_size: images per forward pass.
        uses_cache: whether ``dataset`` items carry cached backbone features.
    """
    standardizer = model.feature_norm
    if standardizer is None or bool(standardizer.fitted):
        return
    rank, world = get_rank(), get_world_size()
    loader = build_loader(Subset(dataset, list(range(rank, len(dataset), world))), batch_size, 0, False, seed=0)
    # Zeros of the right size on every rank, so ranks with an empty shard still take part in the all-reduce.
    sums = {m: torch.zeros(standardizer.channels, dtype=torch.float64, device=device) for m in standardizer.modalities}
    squares = {m: torch.zeros_like(sums[m]) for m in standardizer.modalities}
    count = torch.zeros(1, dtype=torch.float64, device=device)
    for batch in loader:
        if uses_cache:
            features = {m: f.to(device) for m, f in batch["features"].items()}
        else:
            features = model.extract_features(batch["image"].to(device), batch["depth"].to(device))
        for modality in standardizer.modalities:
            flat = features[modality].double().transpose(0, 1).flatten(1)  # B×C×h×w -> C×(B·h·w)
            sums[modality] += flat.sum(1)
            squares[modality] += (flat**2).sum(1)
        count += flat.shape[1]
    if world > 1:
        for tensor in [count, *sums.values(), *squares.values()]:
            torch.distributed.all_reduce(tensor)
    standardizer.fit(sums, squares, int(count.item()))
    ranges = []
    for modality in standardizer.modalities:
        std = getattr(standardizer, f"std_{modality}")
        ranges.append(f"{modality} {float(std.min()):.3g}-{float(std.max()):.3g} (mean {float(std.mean()):.3g})")
    LOGGER.info("feature standardisation fitted on %d feature vectors: channel std %s", int(count.item()),
                ", ".join(ranges))
