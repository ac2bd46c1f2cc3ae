"""ES2D: scan orders over the stride-2 sub-grids, gather/scatter, module shapes and gradients."""

import pytest
import torch

from models.mamba import ES2D, ESSMBlock
from models.mamba.es2d import SUBGRID_OFFSETS, scan_orders, scan_permutation


def positions(order, width):
    return [(int(i) // width, int(i) % width) for i in order]


@pytest.mark.parametrize(("height", "width"), [(2, 2), (4, 6), (8, 8), (14, 14)])
def test_scan_orders_cover_each_subgrid_once(height, width):
    orders = scan_orders(height, width)
    assert orders.shape == (4, height * width // 4)
    for k, (row_off, col_off) in enumerate(SUBGRID_OFFSETS):
        visited = positions(orders[k], width)
        expected = {(r, c) for r in range(row_off, height, 2) for c in range(col_off, width, 2)}
        assert len(visited) == len(set(visited)) == len(expected)
        assert set(visited) == expected
    assert sorted(orders.reshape(-1).tolist()) == list(range(height * width))


def test_scan_orders_directions_on_4x6_grid():
    height, width = 4, 6
    orders = [positions(o, width) for o in scan_orders(height, width)]
    assert orders[0] == [(0, 0), (0, 2), (0, 4), (2, 0), (2, 2), (2, 4)]  # (0,0) sub-grid, row-major
    assert orders[1] == [(0, 1), (2, 1), (0, 3), (2, 3), (0, 5), (2, 5)]  # (0,1) sub-grid, column-major
    assert orders[2] == [(3, 4), (3, 2), (3, 0), (1, 4), (1, 2), (1, 0)]  # (1,0) sub-grid, row-major reversed
    assert orders[3] == [(3, 5), (1, 5), (3, 3), (1, 3), (3, 1), (1, 1)]  # (1,1) sub-grid, column-major reversed


@pytest.mark.parametrize(("height", "width"), [(2, 2), (4, 6), (14, 14)])
def test_scan_permutation_gather_then_scatter_is_identity(height, width):
    gather, scatter = scan_permutation(height, width)
    tokens = torch.randn(2, height * width, 3)
    torch.testing.assert_close(tokens[:, gather][:, scatter], tokens, rtol=0, atol=0)
    torch.testing.assert_close(tokens[:, scatter][:, gather], tokens, rtol=0, atol=0)
    torch.testing.assert_close(gather, scan_orders(height, width).reshape(-1), rtol=0, atol=0)


@pytest.mark.parametrize("size", [(3, 4), (1, 1), (5, 2)])
def test_scan_orders_reject_odd_grids(size):
    with pytest.raises(ValueError, match="even grid"):
        scan_orders(*size)


def test_es2d_tokens_are_scanned_in_their_subgrid_direction():
    """A token only influences later tokens of its own sub-grid's scan, in scan order."""
    torch.manual_seed(0)
    height, width = 4, 6
    module = ES2D(8, d_state=4, grid_size=(height, width)).double()
    orders = scan_orders(height, width)
    x = torch.randn(1, height, width, 8, dtype=torch.float64)
    probe = x.clone()
    k, step = 2, 2
    src = int(orders[k, step])
    probe[0, src // width, src % width] += 1.0
    changed = (module(probe) - module(x)).abs().sum(-1)[0] > 0  # (H, W)
    expected = torch.zeros(height, width, dtype=torch.bool)
    for pos in orders[k, step:].tolist():
        expected[pos // width, pos % width] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize(("height", "width", "grid_size"), [(4, 4, (4, 4)), (5, 7, None), (3, 3, (3, 3)), (1, 3, None)])
def test_es2d_shapes_and_gradients(height, width, grid_size):
    torch.manual_seed(0)
    module = ES2D(16, d_state=4, grid_size=grid_size)
    x = torch.randn(2, height, width, 16, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_es2d_init_follows_mamba_parametrisation():
    torch.manual_seed(0)
    module = ES2D(32, d_state=16, dt_min=0.001, dt_max=0.1)
    assert module.dt_rank == 2
    assert module.x_proj_weight.shape == (4, 2 + 32, 32)
    assert module.dt_proj_weight.shape == (4, 32, 2)
    A = -torch.exp(module.A_log)
    torch.testing.assert_close(A, -torch.arange(1, 17, dtype=torch.float32).expand(128, 16))
    torch.testing.assert_close(module.D, torch.ones(128))
    dt = torch.nn.functional.softplus(module.dt_proj_bias)
    assert dt.min() >= 0.001 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)


def test_es2d_precomputed_indices_are_buffers_not_state():
    module = ES2D(8, d_state=4, grid_size=(7, 7))
    buffers = dict(module.named_buffers())
    gather, scatter = scan_permutation(8, 8)
    assert torch.equal(buffers["gather_index"], gather) and torch.equal(buffers["scatter_index"], scatter)
    assert "gather_index" not in module.state_dict()


@pytest.mark.parametrize(("height", "width"), [(4, 4), (3, 5)])
def test_essm_block_keeps_grid_shape(height, width):
    torch.manual_seed(0)
    block = ESSMBlock(16, d_state=4, num_heads=2, grid_size=(height, width))
    x = torch.randn(2, height, width, 16, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.sum().backward()
    missing = [n for n, p in block.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
