"""Selective scan: the PyTorch scan against a naive float64 recurrence, backend selection, CUDA kernel."""

import importlib.util
import itertools
import logging
import sys

import pytest
import torch
import torch.nn.functional as F

from models.mamba import selective_scan
from models.mamba.selective_scan import SCAN_BACKEND_ENV, kernel_rejects, selective_scan_torch

BATCH, DIM, STATE, LENGTH = 2, 4, 3, 5


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """One time step and one channel at a time, in float64: returns (out, last_state)."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    batch, dim, length = u.shape
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    dt = delta if delta_bias is None else delta + delta_bias.double()[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    h = [torch.zeros(batch, A.shape[1], dtype=torch.float64) for _ in range(dim)]
    outs = []
    for t in range(length):
        y_t = []
        for d in range(dim):
            b_row = B[:, d // (dim // B.shape[1]), :, t]  # (batch, state)
            c_row = C[:, d // (dim // C.shape[1]), :, t]
            step = dt[:, d, t, None]
            h[d] = torch.exp(step * A[d]) * h[d] + step * b_row * u[:, d, t, None]
            y = (h[d] * c_row).sum(-1)
            if D is not None:
                y = y + D.double()[d] * u[:, d, t]
            y_t.append(y)
        outs.append(torch.stack(y_t, dim=1))
    out = torch.stack(outs, dim=-1)
    if z is not None:
        out = out * F.silu(z.double())
    return out, torch.stack(h, dim=1)


def make_inputs(groups_b, groups_c, with_d, with_z, with_bias, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift).to(dtype)

    def mat(groups):
        return rand(BATCH, STATE, LENGTH) if groups is None else rand(BATCH, groups, STATE, LENGTH)

    inputs = {
        "u": rand(BATCH, DIM, LENGTH),
        "delta": rand(BATCH, DIM, LENGTH, scale=0.3, shift=0.5),
        "A": -torch.rand(DIM, STATE, generator=gen, dtype=torch.float64).to(dtype) - 0.1,
        "B": mat(groups_b),
        "C": mat(groups_c),
        "D": rand(DIM) if with_d else None,
        "z": rand(BATCH, DIM, LENGTH) if with_z else None,
        "delta_bias": rand(DIM, scale=0.2) if with_bias else None,
    }
    return {k: (v.requires_grad_() if v is not None else None) for k, v in inputs.items()}


GROUPINGS = [(None, None), (1, None), (2, 4), (4, 2)]
CASES = list(itertools.product(GROUPINGS, [False, True], [False, True], [False, True], [False, True], [False, True]))


@pytest.mark.parametrize(("groups", "with_d", "with_z", "with_bias", "softplus", "last_state"), CASES)
def test_selective_scan_torch_matches_naive_recurrence(groups, with_d, with_z, with_bias, softplus, last_state):
    inputs = make_inputs(*groups, with_d, with_z, with_bias)
    ref_out, ref_state = naive_scan(**inputs, delta_softplus=softplus)
    result = selective_scan_torch(**inputs, delta_softplus=softplus, return_last_state=last_state)
    out, state = result if last_state else (result, None)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    if last_state:
        assert state.shape == (BATCH, DIM, STATE)
        torch.testing.assert_close(state, ref_state, rtol=1e-10, atol=1e-10)

    gen = torch.Generator().manual_seed(1)
    w_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    w_state = torch.randn(ref_state.shape, generator=gen, dtype=torch.float64)
    loss = (out * w_out).sum() + ((state * w_state).sum() if last_state else 0.0)
    ref_loss = (ref_out * w_out).sum() + ((ref_state * w_state).sum() if last_state else 0.0)
    leaves = [v for v in inputs.values() if v is not None]
    grads = torch.autograd.grad(loss, leaves)
    ref_grads = torch.autograd.grad(ref_loss, leaves)
    names = [k for k, v in inputs.items() if v is not None]
    for name, grad, ref_grad in zip(names, grads, ref_grads, strict=True):
        assert grad.shape == inputs[name].shape, name
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-9, msg=lambda m, n=name: f"grad {n}: {m}")


def test_selective_scan_torch_passes_gradcheck():
    inputs = make_inputs(2, 1, True, True, True, seed=3)
    names = list(inputs)

    def fn(*tensors):
        out, state = selective_scan_torch(**dict(zip(names, tensors)), delta_softplus=True, return_last_state=True)
        return out, state

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()))


def test_selective_scan_float32_accumulates_and_keeps_dtype():
    inputs = make_inputs(2, 2, True, True, True, dtype=torch.float32)
    ref_out, _ = naive_scan(**inputs, delta_softplus=True)
    out = selective_scan_torch(**inputs, delta_softplus=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)

    bf16 = {k: (v.detach().bfloat16() if k in ("u", "delta", "z") else v) for k, v in inputs.items()}
    out_bf16 = selective_scan_torch(**bf16, delta_softplus=True)
    assert out_bf16.dtype == torch.bfloat16
    torch.testing.assert_close(out_bf16.float(), out.detach(), rtol=5e-2, atol=5e-2)


def test_selective_scan_ignores_autocast():
    inputs = {
        k: (v.detach().float() if v is not None else None) for k, v in make_inputs(2, 1, True, True, True).items()
    }
    expected = selective_scan_torch(**inputs, delta_softplus=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = selective_scan_torch(**inputs, delta_softplus=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["auto", "torch", ""])
def test_selective_scan_cpu_backends_use_torch_scan(monkeypatch, backend):
    monkeypatch.setenv(SCAN_BACKEND_ENV, backend)
    inputs = make_inputs(None, None, True, False, True)
    expected = selective_scan_torch(**inputs)
    torch.testing.assert_close(selective_scan(**inputs), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "dtype, b_shape, c_shape, reason",
    [
        (torch.float32, (2, 4, 5), (2, 4, 5), None),
        (torch.bfloat16, (2, 2, 4, 5), (2, 2, 4, 5), None),
        (torch.float64, (2, 4, 5), (2, 4, 5), "float64"),
        (torch.float32, (2, 2, 4, 5), (2, 1, 4, 5), "same layout and group count"),
        (torch.float32, (2, 4, 5), (2, 1, 4, 5), "same layout and group count"),
    ],
)
def test_kernel_rejects_what_mamba_ssm_cannot_take(dtype, b_shape, c_shape, reason):
    u = torch.zeros(2, 6, 5, dtype=dtype)
    rejected = kernel_rejects(u, torch.zeros(b_shape), torch.zeros(c_shape))
    assert rejected is None if reason is None else reason in rejected


@pytest.mark.parametrize(
    ("backend", "message"),
    [("cuda", f"{SCAN_BACKEND_ENV}=cuda.*CUDA device"), ("triton", f"{SCAN_BACKEND_ENV}='triton'")],
)
def test_selective_scan_unusable_backend_raises(monkeypatch, backend, message):
    monkeypatch.setenv(SCAN_BACKEND_ENV, backend)
    inputs = make_inputs(None, None, False, False, False)
    with pytest.raises(ValueError, match=message):
        selective_scan(**inputs)


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("B", (BATCH, 3, STATE, LENGTH), "groups=3 must divide dim=4"),
        ("C", (BATCH, STATE + 1, LENGTH), r"C: expected shape \(2, 3, 5\)"),
        ("delta", (BATCH, DIM, LENGTH + 1), "delta: expected shape"),
        ("D", (DIM + 1,), r"D: expected shape \(4,\)"),
        ("u", (BATCH, DIM, 0), "non-empty"),
    ],
)
def test_selective_scan_bad_shape_raises(name, shape, message):
    inputs = make_inputs(None, None, True, False, False)
    inputs[name] = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=message):
        selective_scan_torch(**inputs)


def _cuda_kernel_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("mamba_ssm") is not None


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_kernel_available(), reason="needs a CUDA device and mamba-ssm")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_scan_cuda_kernel_matches_torch_scan(monkeypatch, dtype):
    gen = torch.Generator().manual_seed(0)
    batch, dim, state, length, groups = 2, 64, 16, 196, 4

    def rand(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=gen) * scale + shift).cuda()

    u, z = rand(batch, dim, length).to(dtype), rand(batch, dim, length).to(dtype)
    delta = rand(batch, dim, length, scale=0.5, shift=-1.0).to(dtype)
    A = -torch.exp(rand(dim, state, scale=0.5))
    B, C = rand(batch, groups, state, length).to(dtype), rand(batch, groups, state, length).to(dtype)
    D, delta_bias = rand(dim), rand(dim, scale=0.1)
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D, z, delta_bias)]
    weight = rand(batch, dim, length)
    results = {}
    for backend in ("cuda", "torch"):
        monkeypatch.setenv(SCAN_BACKEND_ENV, backend)
        out, last = selective_scan(*leaves, delta_softplus=True, return_last_state=True)
        grads = torch.autograd.grad((out.float() * weight).sum(), leaves)
        results[backend] = (out.float(), last.float(), [g.float() for g in grads])
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    (k_out, k_last, k_grads), (t_out, t_last, t_grads) = results["cuda"], results["torch"]
    torch.testing.assert_close(k_out, t_out, rtol=tol, atol=tol)
    torch.testing.assert_close(k_last, t_last, rtol=tol, atol=tol)
    for k_grad, t_grad in zip(k_grads, t_grads, strict=True):
        scale = t_grad.abs().max().clamp_min(1.0)
        torch.testing.assert_close(k_grad / scale, t_grad / scale, rtol=tol, atol=tol)


@pytest.mark.parametrize(("setting", "expected"), [
    (None, "selective scan: PyTorch scan (tensors on cpu; IUMAD_SCAN=auto)"),
    ("torch", "selective scan: PyTorch scan (IUMAD_SCAN=torch)"),
])
def test_the_scan_backend_and_why_are_logged_once(monkeypatch, caplog, setting, expected):
    module = sys.modules["models.mamba.selective_scan"]
    if setting is None:
        monkeypatch.delenv(SCAN_BACKEND_ENV, raising=False)
    else:
        monkeypatch.setenv(SCAN_BACKEND_ENV, setting)
    module._log_backend.cache_clear()
    u, delta, A = torch.randn(1, 4, 6), torch.rand(1, 4, 6), -torch.rand(4, 3)
    B, C = torch.randn(1, 3, 6), torch.randn(1, 3, 6)
    with caplog.at_level(logging.INFO, logger=module.__name__):
        for _ in range(3):
            module.selective_scan(u, delta, A, B, C)
    assert [r.getMessage() for r in caplog.records] == [expected]
