"""The one path from a loader's batch to the model: device transfer and the forward call.

Every training-time forward pass (the step trainer, model selection, strategies that collect
activations) goes through :func:`forward_batch`, so a change of how inputs reach the model (a
new modality) is made here once; evaluation and prediction use :func:`autocast` and
:func:`float_outputs` the same way (``trainer.precision``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["autocast", "batch_to_device", "batch_inputs", "float_outputs", "forward_batch", "allow_tf32"]


def autocast(device: torch.device, precision: str):
    """The context of ``trainer.precision``: bf16 autocast on ``device`` (CUDA or CPU) for ``bf16``; none for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def float_outputs(outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every floating-point output in float32, so losses and reductions run in fp32 whatever the precision."""
    return {k: v.float() if isinstance(v, Tensor) and v.is_floating_point() else v for k, v in outputs.items()}


def allow_tf32(device: torch.device) -> None:
    """On CUDA, let fp32 matmuls and convolutions use TF32 tensor cores (the speed of ``fp32`` on Ampere and later)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


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


def batch_inputs(batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    """The model's inputs of a loader's batch (``batch["inputs"]``, modality → ``(B, 3, S, S)``) on ``device``."""
    return {m: x.to(device, non_blocking=True) for m, x in batch["inputs"].items()}


def forward_batch(
    model: nn.Module, batch: dict[str, Any], device: torch.device, uses_cache: bool, precision: str = "fp32"
) -> dict[str, Tensor]:
    """Run ``model`` (or its DDP wrapper) on a training batch with its labels choosing the class adapters.

    No anomaly maps are made, in eval mode either (model selection and the strategies' activations need none).

    Args:
        model: the model or its DDP wrapper.
        batch: ``inputs`` (modality → ``(B, 3, S, S)``), ``class_id`` ``(B,)`` and, with ``uses_cache``,
            ``features`` (modality → ``(B, C, h, w)`` cached backbone features).
        device: where the model is.
        uses_cache: whether the batch carries cached features (the backbone is skipped).
        precision: ``fp32`` or ``bf16`` (autocast); the outputs come back in float32 either way.
    """
    batch = batch_to_device({k: batch[k] for k in ("inputs", "class_id", "features") if k in batch}, device)
    features = batch["features"] if uses_cache else None
    with autocast(device, precision):
        outputs = model(batch["inputs"], features=features, class_ids=batch["class_id"], maps=False)
    return float_outputs(outputs)
