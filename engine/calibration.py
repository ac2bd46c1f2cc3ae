"""Data-dependent set-up of the model before the base step: the per-modality feature scale.

With ``model.feature_scale: train_rms`` (:class:`models.ib_iumad.IBIUMAD`) the base step first measures the
mean token energy ``‖F_m‖²`` of each modality's clean features over its training images and sets the
modality's factor to ``1 / sqrt(energy)``; later steps keep the factors (they are part of every checkpoint).
Every process measures the whole training set in the same order, so the factors agree across DDP ranks
without communication.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from datasets import build_loader

__all__ = ["mean_token_energy", "calibrate_feature_scale"]

LOGGER = logging.getLogger(__name__)


def _clean_features(model: nn.Module, batch: dict[str, Any], device: torch.device, uses_cache: bool):
    if uses_cache:
        return batch["features"]
    return model.extract_features(batch["image"].to(device), batch["depth"].to(device))


@torch.no_grad()
def mean_token_energy(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int, uses_cache: bool
) -> dict[str, float]:
    """Mean over all tokens of ``‖F_m‖²`` (squared L2 norm over channels) per modality, in float64.

    Args:
        model: the IB-IUMAD network (its frozen part gives the features).
        dataset: training samples; with ``uses_cache`` they carry ``"features"`` (modality → ``(C, h, w)``).
        device: where the backbone runs.
        batch_size: images per forward pass.
        uses_cache: read the cached features instead of running the backbone.

    Returns:
        modality → mean token energy (feature units squared).
    """
    loader = build_loader(dataset, batch_size, 0, shuffle=False, seed=0)
    sums = {m: 0.0 for m in model.modalities}
    tokens = 0
    for batch in loader:
        features = _clean_features(model, batch, device, uses_cache)
        for modality in model.modalities:
            sums[modality] += float(features[modality].double().pow(2).sum())
        first = features[model.modalities[0]]
        tokens += first.shape[0] * first.shape[2] * first.shape[3]
    return {m: total / tokens for m, total in sums.items()}


def calibrate_feature_scale(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int, uses_cache: bool
) -> None:
    """Set the model's per-modality feature factors from ``dataset`` (see the module docstring)."""
    energy = mean_token_energy(model, dataset, device, batch_size, uses_cache)
    model.calibrate_feature_scale(energy)
    LOGGER.info(
        "feature scale (train_rms): %s",
        ", ".join(f"{m} x{model.modality_scale[i].item():.4g} (token energy {energy[m]:.4g})"
                  for i, m in enumerate(model.modalities)),
    )
