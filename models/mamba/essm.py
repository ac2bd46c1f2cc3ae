"""ESSM block, the unit of the paper's Mamba decoder (efficient selective-scan block with attention).

``x`` is a token grid ``(B, H, W, C)``::

    a   = LN(x)
    s   = x + Linear( SiLU(Linear(a)) * LN( ES2D( SiLU( DWConv3x3( Linear(a) ) ) ) ) )
    t   = s + MHSA(LN(s))
    out = t + DWConv3x3(x)                       (depthwise-conv skip from the block input)
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from models.mamba.es2d import ES2D

__all__ = ["ESSMBlock"]



def depthwise_conv(channels: int, kernel: int) -> nn.Conv2d:
    """Depthwise ``kernel × kernel`` convolution, padded to keep the size, on ``(B, channels, H, W)``.

    Its weight ``(channels, 1, k, k)`` takes the strides ``(k·k, 1, k, 1)`` its gradient gets from the convolution's
    backward (the size-1 axis admits both), so DDP's gradient buckets take the gradient without a copy.
    """
    conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
    weight = conv.weight.detach()
    conv.weight = nn.Parameter(weight.as_strided(weight.shape, (kernel * kernel, 1, kernel, 1)))
    return conv

class ESSMBlock(nn.Module):
    """Gated ES2D mixer, multi-head self-attention and a depthwise-conv skip on a ``(B, H, W, C)`` grid.

    Args:
        dim: Token channels ``C``.
        d_state: SSM state size.
        expand: Width of the SSM branch as a multiple of ``dim``.
        dt_rank: Rank of the step projection; ``"auto"`` = ``ceil(dim / 16)`` (Mamba's rule, relative
            to the block width).
        d_conv: Kernel size of both depthwise convolutions (odd).
        num_heads: Attention heads (must divide ``dim``).
        attn_drop: Dropout on the attention weights.
        grid_size: Expected ``(H, W)`` (lets ES2D precompute its scan permutation).
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        expand: float = 2.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        num_heads: int = 4,
        attn_drop: float = 0.0,
        grid_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if d_conv < 1 or d_conv % 2 == 0:
            raise ValueError(f"d_conv must be a positive odd kernel size, got {d_conv}")
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide dim={dim}")
        inner = int(expand * dim)
        if inner < 1:
            raise ValueError(f"expand={expand} gives an empty SSM branch for dim={dim}")
        self.inner = inner
        self.norm = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, 2 * inner)  # both branches in one matmul: [ssm | gate]
        self.conv = depthwise_conv(inner, d_conv)
        self.act = nn.SiLU()
        self.ssm = ES2D(
            inner, d_state=d_state, dt_rank=math.ceil(dim / 16) if dt_rank == "auto" else dt_rank, grid_size=grid_size
        )
        self.ssm_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, dim)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=attn_drop, batch_first=True)
        self.skip_conv = depthwise_conv(dim, d_conv)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: Tokens ``(B, H, W, C)``.

        Returns:
            ``(B, H, W, C)``.
        """
        batch, height, width, channels = x.shape
        ssm_in, gate = self.in_proj(self.norm(x)).chunk(2, dim=-1)  # (B, H, W, inner) each
        ssm_in = self.conv(ssm_in.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # conv on (B, inner, H, W)
        mixed = self.ssm_norm(self.ssm(self.act(ssm_in))) * self.act(gate)
        s = x + self.out_proj(mixed)

        tokens = s.reshape(batch, height * width, channels)  # (B, H*W, C)
        q = self.attn_norm(tokens)
        tokens = tokens + self.attn(q, q, q, need_weights=False)[0]

        skip = self.skip_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, C)
        return tokens.view(batch, height, width, channels) + skip
