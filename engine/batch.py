"""The one path from a loader's batch to the model: device transfer and the forward call.

Every training-time forward pass (the step trainer, model selection, strategies that collect
activations) goes through :func:`forward_batch`, so a change of how inputs reach the model (a
precision, a new modality) is made here once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["batch_to_device", "forward_batch"]


def batch_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with every tensor (also inside ``features``) on ``device``; other entries unchanged."""
    moved: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, Tensor):
            moved[key] = value.to(device, non_blocking=True)
        elif isinstance(value, dict):
            moved[key] = {k: v.to(device, non_blocking=True) for k, v in value.items()}
        else:
            moved[key] = value
    return moved


def forward_batch(model: nn.Module, batch: dict[str, Any], device: torch.device, uses_cache: bool) -> dict[str, Tensor]:
    """Run ``model`` (or its DDP wrapper) on a training batch with its labels choosing the class adapters.

    Args:
        model: the model or its DDP wrapper.
        batch: ``image``, ``depth`` ``(B, 3, S, S)``, ``class_id`` ``(B,)`` and, with ``uses_cache``, ``features``
            (modality → ``(B, C, h, w)`` cached backbone features).
        device: where the model is.
        uses_cache: whether the batch carries cached features (the backbone is skipped).
    """
    batch = batch_to_device({k: batch[k] for k in ("image", "depth", "class_id", "features") if k in batch}, device)
    features = batch["features"] if uses_cache else None
    return model(batch["image"], batch["depth"], features=features, class_ids=batch["class_id"])
