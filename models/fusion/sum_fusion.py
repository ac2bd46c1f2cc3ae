"""Naive aggregation of the modalities (the "w/o IBFM" ablation of IB-IUMAD).

``F^g`` is the channel concatenation of the per-modality reconstructions: no attention, no bottleneck,
no class head. Since the discriminator's map is the L2 norm over all channels, the fused map is the
root of the *sum* of the per-modality squared errors, hence the name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["SumFusion"]


class SumFusion(nn.Module):
    """Concatenate the reconstructions (no parameters).

    Args:
        in_channels: channels of each modality's reconstruction, in modality order.
        num_classes: accepted for the common fusion wiring; unused (this fusion has no class head).

    Attributes:
        out_channels: ``sum(in_channels)``.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("SumFusion needs at least one modality")
        self.in_channels = [int(c) for c in in_channels]
        self.out_channels = sum(self.in_channels)

    def forward(self, recons: Sequence[Tensor]) -> dict[str, Tensor]:
        """Aggregate.

        Args:
            recons: one ``(B, C_m, h, w)`` reconstruction per modality, in modality order.

        Returns:
            ``"feature_rec"``: ``(B, C_total, h, w)``.
        """
        if [r.shape[1] for r in recons] != self.in_channels:
            raise ValueError(
                f"expected reconstructions with channels {self.in_channels}, got {[tuple(r.shape) for r in recons]}"
            )
        return {"feature_rec": torch.cat(list(recons), dim=1)}
