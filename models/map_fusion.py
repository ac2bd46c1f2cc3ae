"""Fused anomaly map from the per-modality maps, each standardised against normal training maps (a switch).

The paper's fused map is the L2 distance over the concatenated channels of ``F^g`` and the clean features
(:class:`models.discriminator.Discriminator`); a modality whose errors are larger or noisier on normal
images then dominates it. With ``model.map_fusion: normal_zmax`` the fused map is instead the pixelwise
maximum over modalities of ``(map_m - mean_m) / std_m``, where ``mean_m`` and ``std_m`` are the mean and
std over every scored pixel (all, or the object footprint's) of modality ``m``'s maps of a class's training
images (never test images, nor the held-out normals that set the decision thresholds), fitted once right after
the step that learned the class. A pixel is then as anomalous as its most surprising modality, in units of that
modality's normal variation. The statistics are buffers: they travel in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["NormalMapFusion"]


class NormalMapFusion(nn.Module):
    """Pixelwise max over modalities of each map's z-score against its class's training maps.

    An image uses the statistics of the class its class adapters were chosen for (``class_ids``, the
    router's choice at test time); without ``class_ids``, or for a class not fitted yet, the statistics
    pooled over the fitted classes (mean of their means and of their stds); before any fit, mean 0 and
    std 1 (the max of the raw maps).

    Args:
        modalities: modality names, in the order of the statistics' columns.
        num_classes: initial number of classes ``K`` (grows with :meth:`grow`).

    Attributes:
        mean, std: ``(K, M)`` float buffers per class and modality.
        fitted: ``(K,)`` bool buffer.
    """

    def __init__(self, modalities: Sequence[str], num_classes: int) -> None:
        super().__init__()
        self.modalities = list(modalities)
        shape = (int(num_classes), len(self.modalities))
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.register_buffer("fitted", torch.zeros(shape[0], dtype=torch.bool))

    def grow(self, num_classes: int) -> None:
        """Add unfitted rows up to ``num_classes``; the rows of the classes seen so far are kept."""
        extra = int(num_classes) - self.mean.shape[0]
        if extra <= 0:
            return
        width = len(self.modalities)
        self.mean = torch.cat([self.mean, self.mean.new_zeros(extra, width)])
        self.std = torch.cat([self.std, self.std.new_ones(extra, width)])
        self.fitted = torch.cat([self.fitted, self.fitted.new_zeros(extra)])

    def set_statistics(self, class_id: int, statistics: Mapping[str, tuple[float, float]]) -> None:
        """Store one class's ``modality -> (mean, std)`` of its training maps (std must be > 0)."""
        for column, modality in enumerate(self.modalities):
            mean, std = statistics[modality]
            if not std > 0:
                raise ValueError(f"class {class_id}, modality {modality}: the normal maps' std must be > 0, got {std}")
            self.mean[class_id, column] = float(mean)
            self.std[class_id, column] = float(std)
        self.fitted[class_id] = True

    def _statistics(self, class_ids: Tensor | None, batch: int) -> tuple[Tensor, Tensor]:
        """Per-sample ``(B, M)`` mean and std."""
        if bool(self.fitted.any()):
            pooled_mean, pooled_std = self.mean[self.fitted].mean(0), self.std[self.fitted].mean(0)
        else:
            pooled_mean, pooled_std = torch.zeros_like(self.mean[0]), torch.ones_like(self.std[0])
        mean, std = pooled_mean.expand(batch, -1), pooled_std.expand(batch, -1)
        if class_ids is None:
            return mean, std
        own = self.fitted[class_ids][:, None]
        return torch.where(own, self.mean[class_ids], mean), torch.where(own, self.std[class_ids], std)

    def forward(self, maps: Mapping[str, Tensor], class_ids: Tensor | None = None) -> Tensor:
        """Fuse ``modality -> (B, 1, H, W)`` maps into one ``(B, 1, H, W)`` map (``class_ids``: ``(B,)`` or None)."""
        first = maps[self.modalities[0]]
        mean, std = self._statistics(class_ids, first.shape[0])
        mean, std = mean.to(first.dtype), std.to(first.dtype)
        mean, std = mean[:, :, None, None], std[:, :, None, None]  # (B, M, 1, 1)
        scores = [(maps[m][:, 0] - mean[:, i]) / std[:, i] for i, m in enumerate(self.modalities)]  # (B, H, W) each
        return torch.stack(scores).amax(dim=0)[:, None]
