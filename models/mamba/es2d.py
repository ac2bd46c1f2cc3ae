"""ES2D, the efficient 2D selective scan inside the paper's ESSM blocks (EfficientVMamba-style).

The ``(H, W)`` token grid is sampled with stride 2 into four sub-grids, offsets ``(0, 0)``, ``(0, 1)``,
``(1, 0)``, ``(1, 1)``; sub-grid ``k`` is scanned in direction ``k``: row-major, column-major,
row-major reversed, column-major reversed. Because the four sub-grids partition the grid, the four scan
orders concatenated form one permutation of the grid positions: tokens are gathered into scan order with
that permutation, the four directions run as ONE :func:`selective_scan` call (stacked along the channel
axis, with per-direction ``B``/``C`` as ``groups=4``), and the outputs go back to their grid positions
through the inverse permutation. Every token is visited exactly once, by the direction of its sub-grid.

Odd ``H`` or ``W``: the grid is zero-padded at the bottom/right to even size (so every sub-grid sequence
has the same length ``ceil(H/2) * ceil(W/2)``) and the output is cropped back; padded tokens carry zero
input but do take part in the recurrences of the sub-grids that contain them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.mamba.selective_scan import selective_scan

__all__ = ["ES2D", "NUM_DIRECTIONS", "SUBGRID_OFFSETS", "scan_orders", "scan_permutation"]

NUM_DIRECTIONS = 4
SUBGRID_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


def scan_orders(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """Scan order of each direction as flat indices ``row * width + col`` into an even-sized grid.

    Args:
        height: Grid height (even).
        width: Grid width (even).
        device: Device of the result.

    Returns:
        ``(4, height * width // 4)`` long tensor; row ``k`` lists sub-grid ``SUBGRID_OFFSETS[k]`` in
        direction ``k`` (row-major, column-major, row-major reversed, column-major reversed).
    """
    if height < 2 or width < 2 or height % 2 or width % 2:
        raise ValueError(f"scan_orders needs an even grid of at least 2x2, got {height}x{width}")
    grid = torch.arange(height * width, device=device).view(height, width)
    orders = []
    for k, (row, col) in enumerate(SUBGRID_OFFSETS):
        sub = grid[row::2, col::2]  # (H/2, W/2)
        order = sub.reshape(-1) if k % 2 == 0 else sub.t().reshape(-1)  # row-major / column-major
        orders.append(order.flip(0) if k >= 2 else order)
    return torch.stack(orders)


def scan_permutation(height: int, width: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Gather and scatter indices of the four-direction scan over an even ``height x width`` grid.

    Returns:
        ``(gather, scatter)``, each ``(height * width,)``: ``tokens[:, gather]`` lays the tokens out as the
        four scan sequences one after another; ``scanned[:, scatter]`` puts them back on the grid (the
        inverse permutation).
    """
    gather = scan_orders(height, width, device).reshape(-1)
    scatter = torch.empty_like(gather)
    scatter[gather] = torch.arange(gather.numel(), device=gather.device)
    return gather, scatter


class ES2D(nn.Module):
    """Four-direction selective scan over stride-2 sub-grids (SSM part of an ESSM block).

    Each direction has its own projections (standard Mamba parametrisation): ``x_proj`` maps a token to
    ``(dt_rank + 2 * d_state)`` values ``(dt, B, C)``; ``dt_proj`` maps ``dt`` to a per-channel step
    whose bias is the inverse softplus of a log-uniform step in ``[dt_min, dt_max]``;
    ``A = -exp(A_log)`` with the S4D-real init ``A_log[:, n] = log(n + 1)``; skip ``D = 1``.

    Args:
        d_model: Channels of the input tokens.
        d_state: SSM state size ``N``.
        dt_rank: Rank of the step projection; ``"auto"`` = ``ceil(d_model / 16)``.
        dt_min: Smallest initial step.
        dt_max: Largest initial step.
        dt_init_floor: Lower clamp of the initial step.
        dt_scale: Scale of the ``dt_proj`` weight init.
        grid_size: Expected ``(H, W)``; its permutation is precomputed as buffers, other sizes are
            computed when met.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        grid_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"dt_rank must be a positive int or 'auto', got {dt_rank!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"expected 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_model = d_model
        self.d_state = d_state
        self.dt_rank = dt_rank
        k = NUM_DIRECTIONS
        self.x_proj_weight = nn.Parameter(torch.empty(k, dt_rank + 2 * d_state, d_model))
        self.dt_proj_weight = nn.Parameter(torch.empty(k, d_model, dt_rank))
        self.dt_proj_bias = nn.Parameter(torch.empty(k, d_model))
        self.A_log = nn.Parameter(torch.empty(k * d_model, d_state))
        self.D = nn.Parameter(torch.empty(k * d_model))
        self._dt_init = (dt_min, dt_max, dt_init_floor, dt_scale)
        self.grid_size = None if grid_size is None else (int(grid_size[0]), int(grid_size[1]))
        if self.grid_size is not None:
            gather, scatter = scan_permutation(*self._padded(*self.grid_size))
            self.register_buffer("gather_index", gather, persistent=False)
            self.register_buffer("scatter_index", scatter, persistent=False)
        self.reset_parameters()

    @staticmethod
    def _padded(height: int, width: int) -> tuple[int, int]:
        return height + height % 2, width + width % 2

    def reset_parameters(self) -> None:
        """Mamba initialisation: x_proj like ``nn.Linear``, dt_proj and A/D as in the class docstring."""
        dt_min, dt_max, dt_floor, dt_scale = self._dt_init
        bound = 1.0 / math.sqrt(self.d_model)
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        std = dt_scale * self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj_weight, -std, std)
        with torch.no_grad():
            log_dt = torch.rand_like(self.dt_proj_bias) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
            dt = torch.exp(log_dt).clamp(min=dt_floor)
            self.dt_proj_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
            states = torch.arange(1, self.d_state + 1, dtype=self.A_log.dtype, device=self.A_log.device)
            self.A_log.copy_(torch.log(states).expand_as(self.A_log))
            self.D.fill_(1.0)

    def _indices(self, height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if self.grid_size is not None and (height, width) == self._padded(*self.grid_size):
            return self.gather_index, self.scatter_index
        return scan_permutation(height, width, device)

    def forward(self, x: Tensor) -> Tensor:
        """Scan the token grid.

        Args:
            x: Tokens ``(B, H, W, C)`` with ``C = d_model``.

        Returns:
            ``(B, H, W, C)``: at each position, the scan output of the direction of its sub-grid.
        """
        if x.dim() != 4 or x.shape[-1] != self.d_model:
            raise ValueError(f"ES2D expects (B, H, W, {self.d_model}), got {tuple(x.shape)}")
        batch, height, width, channels = x.shape
        pad_h, pad_w = height % 2, width % 2
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        grid_h, grid_w = height + pad_h, width + pad_w
        gather, scatter = self._indices(grid_h, grid_w, x.device)
        k, length = NUM_DIRECTIONS, grid_h * grid_w // NUM_DIRECTIONS

        seqs = x.reshape(batch, grid_h * grid_w, channels).index_select(1, gather)  # (B, 4*L, C)
        seqs = seqs.view(batch, k, length, channels).transpose(2, 3)  # (B, 4, C, L)
        proj = torch.matmul(self.x_proj_weight, seqs)  # (4, R+2N, C) @ (B, 4, C, L) -> (B, 4, R+2N, L)
        dt, b_mat, c_mat = proj.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        delta = torch.matmul(self.dt_proj_weight, dt)  # (4, C, R) @ (B, 4, R, L) -> (B, 4, C, L)

        y = selective_scan(
            seqs.reshape(batch, k * channels, length),
            delta.reshape(batch, k * channels, length),
            -torch.exp(self.A_log),
            b_mat.contiguous(),  # (B, 4, N, L): groups = directions
            c_mat.contiguous(),
            D=self.D,
            delta_bias=self.dt_proj_bias.reshape(-1),
            delta_softplus=True,
        )
        y = y.view(batch, k, channels, length).transpose(2, 3).reshape(batch, k * length, channels)  # (B, 4*L, C)
        out = y.index_select(1, scatter).view(batch, grid_h, grid_w, channels)
        return out[:, :height, :width] if pad_h or pad_w else out
