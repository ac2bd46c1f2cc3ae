"""Speed and memory of the pure-PyTorch selective scan (the scan behind ES2D / the paper's Mamba decoder).

Compares, on CPU and in one run, ``models.mamba.selective_scan.selective_scan_torch`` ("ours") with

* (a) "mamba-ref loop": a per-timestep autograd loop written the way mamba-ssm's pure reference
  (``selective_scan_ref``) is: discretised ``(B, D, L, N)`` tensors built with ``einsum``, then per step
  ``deltaA[:, :, t] * h + deltaB_u[:, :, t]`` and an ``einsum`` read-out, outputs stacked;
* (b) "mambapy pscan": the ``mambapy`` package's parallel (Blelloch) scan on the same discretised tensors
  (optional: ``pip install mambapy``; the column is skipped when it is not importable).

All variants compute the full scan with D, z, delta_bias and softplus. Every case (variant, length,
forward or forward+backward) runs in a fresh subprocess, so the peak memory is that process's
``VmHWM`` (from ``/proc/self/status``) minus its ``VmRSS`` just before the first call (torch's CPU
allocator has no peak counter). Times are the best of ``--repeats`` runs in each of ``--rounds`` processes
((a) runs once). ``max |dy|`` is the largest forward-output difference to ours.

Usage::

    python benchmarks/scan_bench.py                      # B=4, D=512, N=16, L = 49 196 784 3136
    python benchmarks/scan_bench.py --lengths 49 196 --skip-slow-above 196 --repeats 5 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from models.mamba.selective_scan import selective_scan_torch  # noqa: E402

VARIANTS = ("ours", "mamba_ref_loop", "mambapy")
LABELS = {"ours": "ours", "mamba_ref_loop": "(a) mamba-ref loop", "mambapy": "(b) mambapy pscan"}


def mamba_ref_loop(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True):
    """(a): per-step loop in the style of mamba-ssm's ``selective_scan_ref`` (ungrouped B/C)."""
    dt = delta + delta_bias[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", dt, A))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", dt, B, u)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = delta_a[:, :, t] * h + delta_b_u[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    y = torch.stack(ys, dim=2) + u * D[:, None]
    return y * F.silu(z)


def mambapy_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True):
    """(b): mambapy's parallel scan; its layout is (B, L, D, N), so inputs are transposed in and out."""
    from mambapy.pscan import pscan

    dt = delta + delta_bias[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    dt_l = dt.transpose(1, 2)  # (B, L, D)
    delta_a = torch.exp(dt_l.unsqueeze(-1) * A)  # (B, L, D, N)
    delta_b_u = (dt_l * u.transpose(1, 2)).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)  # (B, L, D, N)
    hs = pscan(delta_a, delta_b_u)
    y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)  # (B, D, L)
    return (y + u * D[:, None]) * F.silu(z)


def ours(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True):
    """The library scan."""
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def make_inputs(batch: int, dim: int, state: int, length: int, requires_grad: bool) -> list[torch.Tensor]:
    """Seeded inputs in mamba-ssm's layouts; A is negative, steps around softplus(-1.5)."""
    gen = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(batch, dim, length, generator=gen),  # u
        torch.randn(batch, dim, length, generator=gen) * 0.5 - 1.5,  # delta
        -torch.exp(torch.randn(dim, state, generator=gen) * 0.5),  # A
        torch.randn(batch, state, length, generator=gen),  # B
        torch.randn(batch, state, length, generator=gen),  # C
        torch.randn(dim, generator=gen),  # D
        torch.randn(batch, dim, length, generator=gen),  # z
        torch.randn(dim, generator=gen) * 0.1,  # delta_bias
    ]
    return [t.requires_grad_(requires_grad) for t in tensors]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_worker(args: argparse.Namespace) -> None:
    """One case in this (fresh) process: print a JSON line with the time and the peak memory."""
    fn = {"ours": ours, "mamba_ref_loop": mamba_ref_loop, "mambapy": mambapy_scan}[args.variant]
    backward = args.mode == "fwdbwd"
    inputs = make_inputs(args.batch, args.dim, args.state, args.length, requires_grad=backward)
    weight = torch.randn(args.batch, args.dim, args.length, generator=torch.Generator().manual_seed(1))
    baseline = _status_kib("VmRSS")
    times = []
    out = None
    for _ in range(args.repeats):
        for t in inputs:
            t.grad = None
        start = time.perf_counter()
        if backward:
            out = fn(*inputs)
            (out * weight).sum().backward()
        else:
            with torch.no_grad():
                out = fn(*inputs)
        times.append(time.perf_counter() - start)
    peak_mib = (_status_kib("VmHWM") - baseline) / 1024
    if args.save:
        torch.save(out.detach(), args.save)
    print(json.dumps({"seconds": min(times), "peak_mib": peak_mib}))


def run_case(script: Path, opts: argparse.Namespace, variant: str, length: int, mode: str, save: Path | None) -> dict:
    """Run one case in a subprocess; returns its JSON result (or ``{"error": ...}``)."""
    repeats = 1 if variant == "mamba_ref_loop" else opts.repeats
    cmd = [sys.executable, str(script), "--worker", "--variant", variant, "--mode", mode, "--length", str(length)]
    cmd += ["--batch", str(opts.batch), "--dim", str(opts.dim), "--state", str(opts.state), "--repeats", str(repeats)]
    if save is not None:
        cmd += ["--save", str(save)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mambapy_available() -> bool:
    try:
        import mambapy.pscan  # noqa: F401
    except Exception:  # any failure just drops the column
        return False
    return True


def main() -> None:
    """Parse arguments, run every case, print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[49, 196, 784, 3136])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="runs per case, best kept ((a) always runs once)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="fresh processes per case, best time kept (damps load from others)"
    )
    parser.add_argument("--skip-slow-above", type=int, default=784, help="run (a) only for L <= this")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("fwd", "fwdbwd"), help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        run_worker(opts)
        return

    variants = [v for v in opts.variants if v != "mambapy" or _mambapy_available()]
    if "mambapy" in opts.variants and "mambapy" not in variants:
        print("mambapy is not importable: (b) skipped (pip install mambapy)")
    if "ours" not in variants:
        variants.insert(0, "ours")
    script = Path(__file__).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="scan_bench_"))
    diffs: dict[tuple[str, int], float] = {}
    try:
        runs: dict[tuple[str, int, str], list[dict]] = {}
        for round_index in range(opts.rounds):  # rounds outermost: each case's runs are spread over the whole run
            for length in opts.lengths:
                for variant in variants:
                    slow = variant == "mamba_ref_loop"
                    if slow and (length > opts.skip_slow_above or round_index > 0):
                        continue
                    for mode in ("fwd", "fwdbwd"):
                        save = tmp / f"{variant}_{length}.pt" if mode == "fwd" and round_index == 0 else None
                        res = run_case(script, opts, variant, length, mode, save)
                        runs.setdefault((variant, length, mode), []).append(res)
                        print(f"  {variant:15s} L={length:5d} {mode:6s} {res}", file=sys.stderr, flush=True)
        results = {case: _best(case_runs) for case, case_runs in runs.items()}
        for length in opts.lengths:
            ref_path = tmp / f"ours_{length}.pt"
            for variant in variants[1:]:
                path = tmp / f"{variant}_{length}.pt"
                if path.exists() and ref_path.exists():
                    diffs[variant, length] = (torch.load(path) - torch.load(ref_path)).abs().max().item()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print_tables(opts, variants, results, diffs)


def print_tables(
    opts: argparse.Namespace,
    variants: list[str],
    results: dict[tuple[str, int, str], dict],
    diffs: dict[tuple[str, int], float],
) -> None:
    """Markdown tables: one for forward, one for forward + backward."""
    print(f"\nselective scan, CPU ({torch.get_num_threads()} threads), B={opts.batch} D={opts.dim} N={opts.state}, ")
    print("D/z/delta_bias/softplus on; time = best of runs; ratio = variant time / ours; peak = VmHWM - VmRSS\n")
    for mode, title in (("fwd", "forward (no_grad)"), ("fwdbwd", "forward + backward")):
        head = ["L", "ours ms", "ours peak MiB"]
        for variant in variants[1:]:
            head += [f"{LABELS[variant]} ms", "ratio", "peak MiB"] + (["max abs dy"] if mode == "fwd" else [])
        print(f"**{title}**\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for length in opts.lengths:
            base = results.get(("ours", length, mode), {})
            row = [str(length), _ms(base), _mib(base)]
            for variant in variants[1:]:
                res = results.get((variant, length, mode))
                if res is None:
                    row += ["skipped", "", ""] + ([""] if mode == "fwd" else [])
                    continue
                ratio = res["seconds"] / base["seconds"] if "seconds" in res and "seconds" in base else None
                row += [_ms(res), "" if ratio is None else f"{ratio:.1f}x", _mib(res)]
                if mode == "fwd":
                    diff = diffs.get((variant, length))
                    row.append("" if diff is None else f"{diff:.1e}")
            print("| " + " | ".join(row) + " |")
        print()


def _best(runs: list[dict]) -> dict:
    """Fastest of several runs of one case, with the largest peak memory seen."""
    ok = [r for r in runs if "seconds" in r]
    if not ok:
        return runs[0]
    return {"seconds": min(r["seconds"] for r in ok), "peak_mib": max(r["peak_mib"] for r in ok)}


def _ms(res: dict) -> str:
    return f"{res['seconds'] * 1e3:.1f}" if "seconds" in res else res.get("error", "?")


def _mib(res: dict) -> str:
    return f"{res['peak_mib']:.0f}" if "peak_mib" in res else ""


if __name__ == "__main__":
    main()
