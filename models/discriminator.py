"""Anomaly discriminator of IB-IUMAD: reconstruction error → pixel anomaly map and image score.

The map is the per-position L2 distance between the fused reconstruction ``F^g`` and the clean
extracted features (UniAD), upsampled bilinearly to the input size and smoothed with a Gaussian
(σ pixels). The image score is the maximum of the map average-pooled over ``pool_size`` × ``pool_size``
windows (stride 1). Per-modality maps use the same recipe on that modality's channel slice. With
``model.score_region: object`` every map is kept on the object footprint (:func:`keep_on_region`) before
its image score is taken.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Discriminator", "gaussian_kernel1d", "keep_on_region"]


def gaussian_kernel1d(sigma: float) -> Tensor:
    """Normalised 1-D Gaussian of size ``2 * ceil(4 * sigma) + 1``: ``(K,)`` float32."""
    radius = math.ceil(4.0 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def keep_on_region(pixel_map: Tensor, region: Tensor) -> Tensor:
    """The map inside ``region``, and each map's minimum outside: ``(B, 1, H, W)``, ``(B, 1, H, W)`` 0/1 -> same.

    Outside values then never raise an image score (a window straddling the edge averages in the minimum),
    and rank below every inside value of their own map.
    """
    if region.shape != pixel_map.shape:
        raise ValueError(f"region {tuple(region.shape)} must have the map's shape {tuple(pixel_map.shape)}")
    return torch.where(region > 0.5, pixel_map, pixel_map.amin(dim=(1, 2, 3), keepdim=True))


class Discriminator(nn.Module):
    """Turn reconstruction errors into smoothed pixel maps and image scores. No learnable parameters.

    Args:
        sigma: Gaussian smoothing σ in pixels of the input image; 0 disables smoothing.
        pool_size: side of the average-pooling window for the image score (clipped to the map size).
    """

    def __init__(self, sigma: float = 4.0, pool_size: int = 16) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.sigma = float(sigma)
        self.pool_size = int(pool_size)
        kernel = gaussian_kernel1d(sigma) if sigma > 0 else torch.ones(1)
        # A derived constant, not state: kept out of the state dict.
        self.register_buffer("kernel", kernel, persistent=False)

    def smooth(self, pixel_map: Tensor) -> Tensor:
        """Separable Gaussian smoothing with replicated borders: ``(B, 1, H, W) -> (B, 1, H, W)``."""
        if self.kernel.numel() == 1:
            return pixel_map
        radius = self.kernel.numel() // 2
        kernel = self.kernel.to(pixel_map.dtype)
        padded = F.pad(pixel_map, (radius, radius, radius, radius), mode="replicate")
        smoothed = F.conv2d(padded, kernel.view(1, 1, 1, -1))  # along W
        return F.conv2d(smoothed, kernel.view(1, 1, -1, 1))  # along H

    def pixel_map(self, feature_rec: Tensor, feature: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Anomaly map from one pair of feature maps.

        Args:
            feature_rec: ``(B, C, h, w)`` reconstruction.
            feature: ``(B, C, h, w)`` clean features.
            image_size: ``(H, W)`` of the output.

        Returns:
            ``(B, 1, H, W)``.
        """
        error = torch.linalg.vector_norm(feature_rec - feature, dim=1, keepdim=True)  # B×1×h×w
        error = F.interpolate(error, size=image_size, mode="bilinear", align_corners=False)
        return self.smooth(error)

    def image_score(self, pixel_map: Tensor) -> Tensor:
        """Max of the average-pooled map: ``(B, 1, H, W) -> (B,)``."""
        size = min(self.pool_size, pixel_map.shape[-2], pixel_map.shape[-1])
        return F.avg_pool2d(pixel_map, size, stride=1).amax(dim=(1, 2, 3))

    def forward(
        self,
        feature_rec: Tensor,
        feature: Tensor,
        image_size: tuple[int, int],
        channel_splits: Mapping[str, tuple[int, int]] | None = None,
    ) -> dict[str, Tensor]:
        """Fused and per-modality maps and scores.

        Args:
            feature_rec: ``(B, C, h, w)`` fused reconstruction ``F^g``.
            feature: ``(B, C, h, w)`` clean features (modalities concatenated along channels).
            image_size: ``(H, W)`` of the input images.
            channel_splits: modality → ``(start, end)`` channel slice; one map per entry.

        Returns:
            ``"anomaly_map"`` ``(B, 1, H, W)``, ``"image_score"`` ``(B,)``, and for each modality ``m`` of
            ``channel_splits``: ``"anomaly_map_<m>"``, ``"image_score_<m>"``.
        """
        if feature_rec.shape != feature.shape or feature.dim() != 4:
            raise ValueError(
                f"expected two equal (B, C, h, w) shapes, got {tuple(feature_rec.shape)} and {tuple(feature.shape)}"
            )
        fused = self.pixel_map(feature_rec, feature, image_size)
        outputs = {"anomaly_map": fused, "image_score": self.image_score(fused)}
        for name, (start, end) in (channel_splits or {}).items():
            if not 0 <= start < end <= feature.shape[1]:
                raise ValueError(f"channel split '{name}' = ({start}, {end}) outside 0..{feature.shape[1]}")
            modality_map = self.pixel_map(feature_rec[:, start:end], feature[:, start:end], image_size)
            outputs[f"anomaly_map_{name}"] = modality_map
            outputs[f"image_score_{name}"] = self.image_score(modality_map)
        return outputs
