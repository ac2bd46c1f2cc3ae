"""Statistics of training normals the model keeps: feature standardisation and class prototypes.

* :func:`fit_feature_standardizer` (``model.feature_norm: standardize``), once, before the base step
  trains: every rank sums the raw features of its shard of the training set, the sums are all-reduced,
  and the model's :class:`~models.feature_norm.FeatureStandardizer` gets the statistics. Later steps keep
  them (see :mod:`models.feature_norm`).
* :func:`fit_class_prototypes` (``model.class_adapter_rank > 0``), before every step trains: the mean
  pooled clean feature of each of the step's classes, the router's prototypes (:mod:`models.class_adapters`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import Dataset

from datasets import build_shard_loader
from engine.batch import batch_inputs
from utils.dist import get_world_size

__all__ = ["fit_feature_standardizer", "fit_class_prototypes"]

LOGGER = logging.getLogger(__name__)


def _raw_features(model: nn.Module, batch: dict, device: torch.device, uses_cache: bool) -> dict[str, torch.Tensor]:
    if uses_cache:
        return {m: f.to(device) for m, f in batch["features"].items()}
    return model.extract_features(batch_inputs(batch, device))


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
    world = get_world_size()
    loader, _ = build_shard_loader(dataset, batch_size, workers=0)
    # Zeros of the right size on every rank, so ranks with an empty shard still take part in the all-reduce.
    sums = {m: torch.zeros(standardizer.channels, dtype=torch.float64, device=device) for m in standardizer.modalities}
    squares = {m: torch.zeros_like(sums[m]) for m in standardizer.modalities}
    count = torch.zeros(1, dtype=torch.float64, device=device)
    for batch in loader:
        features = _raw_features(model, batch, device, uses_cache)
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


@torch.no_grad()
def fit_class_prototypes(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int, uses_cache: bool,
    class_indices: list[int],
) -> None:
    """Set the router's prototypes of ``class_indices`` to their mean pooled clean (standardised) training feature.

    A no-op when the model has no router. Sums are all-reduced under DDP.

    Args:
        model: the (unwrapped) IB-IUMAD model, its feature standardisation already fitted.
        dataset: the step's training samples (items carry ``class_id``).
        device: this process's device.
        batch_size: images per forward pass.
        uses_cache: whether ``dataset`` items carry cached backbone features.
        class_indices: the step's classes.
    """
    router = model.router
    if router is None:
        return
    channels = router.prototypes.shape[1]
    sums = torch.zeros(len(class_indices), channels, dtype=torch.float64, device=device)
    counts = torch.zeros(len(class_indices), dtype=torch.float64, device=device)
    position = {index: row for row, index in enumerate(class_indices)}
    for batch in build_shard_loader(dataset, batch_size, workers=0)[0]:
        features = _raw_features(model, batch, device, uses_cache)
        if model.feature_norm is not None:
            features = {m: model.feature_norm(m, features[m]) for m in model.modalities}
        pooled = router.pooled(torch.cat([features[m] for m in model.modalities], dim=1)).double()
        rows = torch.tensor([position[int(c)] for c in batch["class_id"]], device=device)
        sums.index_add_(0, rows, pooled)
        counts.index_add_(0, rows, torch.ones_like(rows, dtype=torch.float64))
    if get_world_size() > 1:
        torch.distributed.all_reduce(sums)
        torch.distributed.all_reduce(counts)
    for row, index in enumerate(class_indices):
        router.set_prototype(index, (sums[row] / counts[row].clamp_min(1)).float())
    LOGGER.info("class prototypes fitted for classes %s on %d images", class_indices, int(counts.sum().item()))
