"""Per-modality, per-channel standardisation of the clean features (a switch beside the paper's method).

Raw ImageNet features have channels whose scales differ by orders of magnitude, and the two
modalities carry different feature energy. Reconstructing them raw makes the MSE, the jitter and
the anomaly map's L2 norm follow the few loudest channels of the louder modality. With
``model.feature_norm: standardize`` every channel of every modality is mapped to
``(f - mean) / std`` with statistics of the base step's training normals (every position of every
image), measured once before the base step trains and kept fixed afterwards (so the scores of old
classes stay comparable across steps). The statistics are buffers: they travel in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["FeatureStandardizer"]


class FeatureStandardizer(nn.Module):
    """``(f - mean_m) / std_m`` per channel of modality ``m``, with statistics set by :meth:`fit`.

    Args:
        modalities: modality names.
        channels: feature channels ``C`` (the same for every modality).
        min_std_fraction: a channel's std is at least this fraction of the modality's mean std, so a
            channel (nearly) constant on the base classes does not blow up on the classes of later steps
            (EfficientNet-Lite0 on Synthetic3D: the smallest channel std is 0.1 of the mean, so none is floored).

    Attributes:
        fitted: 0-d bool buffer, true once :meth:`fit` has run (or a fitted state dict was loaded).
    """

    def __init__(self, modalities: Sequence[str], channels: int, min_std_fraction: float = 0.05) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.channels = int(channels)
        self.min_std_fraction = float(min_std_fraction)
        for modality in self.modalities:
            self.register_buffer(f"mean_{modality}", torch.zeros(channels))
            self.register_buffer(f"std_{modality}", torch.ones(channels))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, sums: dict[str, Tensor], squares: dict[str, Tensor], count: int) -> None:
        """Set the statistics from per-channel sums over ``count`` feature vectors.

        Args:
            sums: modality → ``(C,)`` sum of the features (float64 recommended).
            squares: modality → ``(C,)`` sum of their squares.
            count: number of feature vectors summed (images × positions).
        """
        if count < 2:
            raise ValueError(f"need at least 2 feature vectors to fit the standardisation, got {count}")
        for modality in self.modalities:
            mean = sums[modality].double() / count
            variance = (squares[modality].double() / count - mean**2).clamp_min(0.0) * count / (count - 1)
            std = variance.sqrt()
            std = std.clamp_min(self.min_std_fraction * float(std.mean()) + 1e-12)
            getattr(self, f"mean_{modality}").copy_(mean)
            getattr(self, f"std_{modality}").copy_(std)
        self.fitted.fill_(True)

    def forward(self, modality: str, feature: Tensor) -> Tensor:
        """Standardise one modality's features: ``(B, C, h, w) -> (B, C, h, w)``."""
        mean = getattr(self, f"mean_{modality}").to(feature.dtype)
        std = getattr(self, f"std_{modality}").to(feature.dtype)
        return (feature - mean[:, None, None]) / std[:, None, None]
