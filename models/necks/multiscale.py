"""Multi-scale feature aggregation (the MFEN neck of IB-IUMAD, UniAD's MFCN).

Every backbone level is resized to one output stride and the levels are concatenated along the
channels: EfficientNet-B4 levels at strides 2, 4, 8, 16 (24 + 32 + 56 + 160 channels) become one
272-channel map at stride 16, i.e. 14 × 14 tokens for a 224-px input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiScaleConcat"]


class MultiScaleConcat(nn.Module):
    """Resize each level to ``out_stride`` (bilinear) and concatenate along channels.

    Levels finer than the output stride are downsampled with anti-aliased bilinear interpolation
    (an area-like average, so a small defect seen by a fine level is not skipped by point sampling);
    coarser levels are upsampled with plain bilinear interpolation.

    Args:
        in_channels: channels of each input level.
        in_strides: stride of each input level w.r.t. the image.
        out_stride: stride of the output map.
        antialias: anti-alias when downsampling (see above).

    Attributes:
        out_channels: ``sum(in_channels)``.
        stride: ``out_stride``.
    """

    def __init__(
        self, in_channels: Sequence[int], in_strides: Sequence[int], out_stride: int, antialias: bool = True
    ) -> None:
        super().__init__()
        if len(in_channels) != len(in_strides) or not in_channels:
            raise ValueError(
                f"in_channels {list(in_channels)} and in_strides {list(in_strides)} must be non-empty and equally long"
            )
        if out_stride <= 0 or any(s <= 0 for s in in_strides):
            raise ValueError(f"strides must be positive, got in_strides {list(in_strides)}, out_stride {out_stride}")
        self.in_channels = [int(c) for c in in_channels]
        self.in_strides = [int(s) for s in in_strides]
        self.stride = int(out_stride)
        self.out_channels = sum(self.in_channels)
        self.antialias = antialias

    def output_size(self, image_size: int) -> tuple[int, int]:
        """Spatial size ``(h, w)`` of the output for a square ``image_size`` input."""
        side = image_size // self.stride
        return side, side

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Aggregate the backbone levels.

        Args:
            features: one ``(B, C_i, H / s_i, W / s_i)`` map per level.

        Returns:
            ``(B, sum C_i, H / out_stride, W / out_stride)``.
        """
        if len(features) != len(self.in_channels):
            raise ValueError(f"expected {len(self.in_channels)} feature levels, got {len(features)}")
        # The image size is recovered from the first level: (H / s_0) * s_0 = H.
        height = features[0].shape[-2] * self.in_strides[0] // self.stride
        width = features[0].shape[-1] * self.in_strides[0] // self.stride
        resized = []
        for feature, channels, stride in zip(features, self.in_channels, self.in_strides):
            if feature.shape[1] != channels:
                raise ValueError(f"level with stride {stride}: expected {channels} channels, got {feature.shape[1]}")
            if feature.shape[-2:] != (height, width):
                downsampling = stride < self.stride
                feature = F.interpolate(  # in float32: the anti-aliased kernel has no bf16 version on the CPU
                    feature.float(),
                    size=(height, width),
                    mode="bilinear",
                    align_corners=False,
                    antialias=self.antialias and downsampling,
                ).to(feature.dtype)
            resized.append(feature)
        return torch.cat(resized, dim=1)  # B×(ΣC)×h×w
