"""Selective scan (S6), the state-space recurrence inside the ES2D scan of the paper's ESSM blocks.

One entry point, :func:`selective_scan`, with the signature and semantics of
``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``. For every batch element ``b``, channel
``d`` and time step ``t``::

    delta'  = softplus(delta + delta_bias)            (bias / softplus optional)
    h_t     = exp(delta'_t * A) * h_{t-1} + delta'_t * B_t * u_t      (h_{-1} = 0, state size N)
    y_t     = <C_t, h_t> + D * u_t                     (D optional)
    out_t   = y_t * silu(z_t)                          (z optional)

Backends: the fused CUDA kernel of ``mamba-ssm`` (optional dependency, imported lazily; any failure of
that import only disables it) when the tensors are on a CUDA device, otherwise
:func:`selective_scan_torch`, a pure-PyTorch implementation that accumulates in float32 (float64 inputs
stay float64). The environment variable ``IUMAD_SCAN`` = ``auto`` (default) | ``cuda`` | ``torch``
forces a backend.

Why the pure version looks the way it does (measured on a 2-core CPU, see ``benchmarks/scan_bench.py``):
the cost is memory traffic over ``(L, B, D, N)`` tensors, not the number of loop steps. So the
discretised tensors ``exp(delta*A)`` and ``delta*B*u`` are built once, time-major and contiguous, by
broadcasting (grouped B/C through views, never ``repeat_interleave``); the recurrence writes each state
straight into one preallocated ``(L, B, D, N)`` buffer (no per-step indexing of autograd-tracked tensors,
no ``stack``), and its backward is the reverse recurrence done in place on one gradient buffer; the
read-out ``<C_t, h_t>`` is one batched ``matmul``. Everything outside the recurrence uses ordinary
autograd.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SCAN_BACKEND_ENV", "selective_scan", "selective_scan_torch"]

LOGGER = logging.getLogger(__name__)

SCAN_BACKEND_ENV = "IUMAD_SCAN"
_BACKENDS = ("auto", "cuda", "torch")
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _requested_backend() -> str:
    """Backend named by ``$IUMAD_SCAN`` (read at every call, so tests and scripts can switch it)."""
    value = os.environ.get(SCAN_BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in _BACKENDS:
        raise ValueError(f"{SCAN_BACKEND_ENV}={value!r} is not a scan backend; expected one of {', '.join(_BACKENDS)}")
    return value


@functools.lru_cache(maxsize=1)
def _load_cuda_kernel() -> tuple[Callable[..., object] | None, str]:
    """Import mamba-ssm's fused scan once.

    Returns:
        ``(selective_scan_fn, "")`` when the import works, else ``(None, reason)``. Any exception is
        caught: a broken CUDA extension must not break importing this package.
    """
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # any failure of an optional extension only disables it
        reason = f"{type(exc).__name__}: {exc}"
        LOGGER.debug("mamba-ssm selective scan kernel unavailable (%s)", reason)
        return None, reason
    return selective_scan_fn, ""


def _check_shapes(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
) -> None:
    """Raise ``ValueError`` naming the argument whose shape does not fit ``u (batch, dim, L)``."""
    if u.dim() != 3:
        raise ValueError(f"u: expected (batch, dim, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if min(batch, dim, length) < 1:
        raise ValueError(f"u: expected non-empty (batch, dim, L), got shape {tuple(u.shape)}")
    if delta.shape != u.shape:
        raise ValueError(f"delta: expected shape {tuple(u.shape)} like u, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A: expected (dim={dim}, state), got shape {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("A: complex state matrices are not supported; expected a real tensor")
    state = A.shape[1]
    for name, mat in (("B", B), ("C", C)):
        if mat.dim() == 3:
            expected: tuple[int, ...] = (batch, state, length)
        elif mat.dim() == 4:
            expected = (batch, mat.shape[1], state, length)
            if mat.shape[1] < 1 or dim % mat.shape[1] != 0:
                raise ValueError(f"{name}: groups={mat.shape[1]} must divide dim={dim}")
        else:
            raise ValueError(f"{name}: expected (batch, state, L) or (batch, groups, state, L), got {tuple(mat.shape)}")
        if tuple(mat.shape) != expected:
            raise ValueError(f"{name}: expected shape {expected}, got {tuple(mat.shape)}")
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and tuple(vec.shape) != (dim,):
            raise ValueError(f"{name}: expected shape ({dim},), got {tuple(vec.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z: expected shape {tuple(u.shape)} like u, got {tuple(z.shape)}")


class _LinearRecurrence(torch.autograd.Function):
    """``h_t = a_t * h_{t-1} + b_t`` over the leading (time) axis, ``h_{-1} = 0``; returns all ``h_t``.

    Inputs and output are contiguous ``(L, ...)`` tensors of one shape. Forward writes every state into
    one buffer; backward runs the reverse recurrence ``g_t = dh_t + a_{t+1} * g_{t+1}`` in place, then
    ``d a_t = g_t * h_{t-1}`` (zero at ``t = 0``) and ``d b_t = g_t``.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, a: Tensor, b: Tensor) -> Tensor:
        states = torch.empty_like(b, memory_format=torch.contiguous_format)
        states[0] = b[0]
        for t in range(1, b.shape[0]):
            torch.addcmul(b[t], a[t], states[t - 1], out=states[t])
        ctx.save_for_backward(a, states)
        return states

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_states: Tensor) -> tuple[Tensor | None, Tensor]:
        a, states = ctx.saved_tensors
        grad = grad_states.clone(memory_format=torch.contiguous_format)
        for t in range(grad.shape[0] - 2, -1, -1):
            grad[t].addcmul_(a[t + 1], grad[t + 1])
        grad_a = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.empty_like(grad)
            grad_a[0].zero_()
            torch.mul(grad[1:], states[:-1], out=grad_a[1:])
        return grad_a, grad


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Pure-PyTorch selective scan; same arguments and results as :func:`selective_scan`.

    Computes in float32 (float64 when any input is float64), with autocast disabled, and returns
    ``u.dtype``. Unlike the CUDA kernel, gradients also flow through the returned last state.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    with torch.autocast(device_type=u.device.type, enabled=False):
        return _scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def _scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    return_last_state: bool,
) -> Tensor | tuple[Tensor, Tensor]:
    """Body of :func:`selective_scan_torch` (shapes already checked)."""
    batch, dim, length = u.shape
    state = A.shape[1]
    dtype = torch.promote_types(u.dtype, torch.float32)
    for tensor in (delta, A, B, C):
        dtype = torch.promote_types(dtype, tensor.dtype)
    b_groups = B.view(batch, 1, state, length) if B.dim() == 3 else B
    c_groups = C.view(batch, 1, state, length) if C.dim() == 3 else C
    groups_b, groups_c = b_groups.shape[1], c_groups.shape[1]

    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    dt_t = dt.permute(2, 0, 1).contiguous()  # (B, D, L) -> (L, B, D)
    u_t = u.to(dtype).permute(2, 0, 1).contiguous()  # (B, D, L) -> (L, B, D)

    decay = torch.exp(dt_t.unsqueeze(-1) * A.to(dtype))  # (L, B, D, N)
    b_t = b_groups.to(dtype).permute(3, 0, 1, 2).unsqueeze(3)  # (L, B, G, 1, N)
    drive = (dt_t * u_t).view(length, batch, groups_b, dim // groups_b, 1) * b_t  # (L, B, G, D/G, N)
    states = _LinearRecurrence.apply(decay, drive.view(length, batch, dim, state))  # (L, B, D, N)

    c_t = c_groups.to(dtype).permute(3, 0, 1, 2).unsqueeze(-1)  # (L, B, G, N, 1)
    y = torch.matmul(states.view(length, batch, groups_c, dim // groups_c, state), c_t)  # (L, B, G, D/G, 1)
    y = y.view(length, batch, dim).permute(1, 2, 0)  # (L, B, D) -> (B, D, L)
    if D is not None:
        y = y + u.to(dtype) * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    out = y.to(u.dtype)
    if return_last_state:
        return out, states[-1].to(u.dtype)  # (B, D, N)
    return out


def kernel_rejects(u: Tensor, B: Tensor, C: Tensor) -> str | None:
    """Why mamba-ssm's kernel cannot take these (shape-checked) inputs, or ``None`` when it can.

    The kernel needs a float32/float16/bfloat16 ``u`` and ``B``, ``C`` in the same layout with the same
    group count; the PyTorch scan takes any of them.
    """
    if u.dtype not in _KERNEL_DTYPES:
        return f"u is {u.dtype}, the kernel takes {', '.join(str(t) for t in _KERNEL_DTYPES)}"
    if B.dim() != C.dim() or (B.dim() == 4 and B.shape[1] != C.shape[1]):
        return f"B {tuple(B.shape)} and C {tuple(C.shape)} must have the same layout and group count"
    return None


def _run_cuda_kernel(
    kernel: Callable[..., object],
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    return_last_state: bool,
) -> Tensor | tuple[Tensor, Tensor]:
    """Call mamba-ssm's kernel with the dtypes it requires (inputs in ``u.dtype``, weights in float32)."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    itype = u.dtype
    result = kernel(
        u,
        delta.to(itype),
        A.float(),
        B.to(itype),
        C.to(itype),
        None if D is None else D.float(),
        None if z is None else z.to(itype),
        None if delta_bias is None else delta_bias.float(),
        delta_softplus,
        return_last_state,
    )
    if return_last_state:  # the kernel keeps the state in float32; the PyTorch scan returns u's dtype
        out, last_state = result
        return out, last_state.to(itype)
    return result  # type: ignore[return-value]


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan with mamba-ssm's ``selective_scan_fn`` semantics.

    Args:
        u: Input ``(batch, dim, L)``.
        delta: Step sizes ``(batch, dim, L)`` (before ``delta_bias`` / softplus).
        A: State matrix (diagonal, real) ``(dim, state)``; usually negative.
        B: Input matrix ``(batch, state, L)`` or ``(batch, groups, state, L)``; with groups, ``dim`` is
            split into ``groups`` equal contiguous chunks and chunk ``g`` uses ``B[:, g]``.
        C: Output matrix, same layouts as ``B``; a group count or layout other than ``B``'s runs on the
            PyTorch scan only (see :func:`kernel_rejects`).
        D: Skip weight ``(dim,)``.
        z: Gate ``(batch, dim, L)``; the output is multiplied by ``silu(z)``.
        delta_bias: Added to ``delta`` ``(dim,)``.
        delta_softplus: Apply softplus to ``delta`` (after the bias).
        return_last_state: Also return the final state ``(batch, dim, state)``.

    Returns:
        ``out (batch, dim, L)`` in ``u.dtype``, or ``(out, last_state)``.

    Raises:
        ValueError: Shapes do not fit, ``$IUMAD_SCAN`` is not ``auto|cuda|torch``, or it is ``cuda`` and
            the tensors are not on a CUDA device or not of a kind the kernel takes.
        RuntimeError: ``$IUMAD_SCAN=cuda`` but mamba-ssm's kernel cannot be imported.
    """
    backend = _requested_backend()
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if backend == "torch":
        _log_backend("PyTorch scan", f"{SCAN_BACKEND_ENV}=torch")
        return selective_scan_torch(*args)
    on_cuda = all(t.is_cuda for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None)
    if backend == "cuda":
        if not on_cuda:
            raise ValueError(
                f"{SCAN_BACKEND_ENV}=cuda needs every scan tensor on a CUDA device, got u on {u.device}; "
                f"unset {SCAN_BACKEND_ENV} or set it to torch/auto to use the PyTorch scan"
            )
        rejected = kernel_rejects(u, B, C)
        if rejected is not None:
            raise ValueError(f"{SCAN_BACKEND_ENV}=cuda: {rejected}; set {SCAN_BACKEND_ENV}=auto for the PyTorch scan")
        kernel, reason = _load_cuda_kernel()
        if kernel is None:
            raise RuntimeError(
                f"{SCAN_BACKEND_ENV}=cuda but mamba-ssm's selective scan kernel cannot be imported ({reason}); "
                f"install mamba-ssm or set {SCAN_BACKEND_ENV}=auto"
            )
        _log_backend("mamba-ssm kernel", f"{SCAN_BACKEND_ENV}=cuda")
        return _run_cuda_kernel(kernel, *args)
    kernel, why = None, f"tensors on {u.device.type}"
    if on_cuda:
        why = kernel_rejects(u, B, C)
        if why is None:
            kernel, reason = _load_cuda_kernel()
            why = None if kernel is not None else f"mamba-ssm unavailable: {reason}"
    _log_backend("mamba-ssm kernel" if kernel is not None else "PyTorch scan",
                 f"{why or 'CUDA tensors'}; {SCAN_BACKEND_ENV}=auto")
    return _run_cuda_kernel(kernel, *args) if kernel is not None else selective_scan_torch(*args)


@functools.cache
def _log_backend(backend: str, why: str) -> None:
    """Say once per process (and per distinct reason) which scan runs, at INFO."""
    LOGGER.info("selective scan: %s (%s)", backend, why)
