"""Feature jitter (UniAD, used by IB-IUMAD's MFEN in training).

Each token ``f`` (a ``C``-vector at one position) becomes ``f + ε · (‖f‖₂ / C) · scale`` with
``ε ~ N(0, I)``, independently per token with probability ``prob``. The reconstruction network then
has to map the perturbed tokens back to the clean ones, which keeps it from learning an identity.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["feature_jitter"]


def feature_jitter(feature: Tensor, scale: float, prob: float, generator: torch.Generator | None = None) -> Tensor:
    """Add norm-scaled Gaussian noise to the tokens of a feature map.

    Args:
        feature: ``(B, C, h, w)`` clean features.
        scale: noise scale (UniAD: 20).
        prob: probability that a given token (sample, position) is jittered; 1 jitters all.
        generator: optional RNG on ``feature``'s device; the global RNG when ``None``.

    Returns:
        ``(B, C, h, w)`` jittered features (a new tensor; ``feature`` is not modified).
    """
    if feature.dim() != 4:
        raise ValueError(f"feature must be (B, C, h, w), got shape {tuple(feature.shape)}")
    if scale < 0 or not 0.0 <= prob <= 1.0:
        raise ValueError(f"expected scale >= 0 and 0 <= prob <= 1, got scale={scale}, prob={prob}")
    batch, channels, height, width = feature.shape
    token_norm = torch.linalg.vector_norm(feature, dim=1, keepdim=True)  # B×1×h×w
    noise = torch.randn(feature.shape, generator=generator, device=feature.device, dtype=feature.dtype)
    noise = noise * (token_norm / channels * scale)
    if prob < 1.0:
        keep = torch.rand((batch, 1, height, width), generator=generator, device=feature.device) < prob
        noise = noise * keep.to(feature.dtype)
    return feature + noise
