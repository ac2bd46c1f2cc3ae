"""Cost of each variant at 224 px: parameters, training and inference images/s, peak memory.

``python benchmarks/throughput.py [--variants uniad,iuf,...] [--train-batch 4] [--infer-batch 8]
[--iters 5] [--device cpu|cuda] [--precision fp32|bf16]``

Every variant is measured in a fresh process (so peak memory is its own): on CPU peak memory is the
process's peak resident set (VmHWM) minus its resident set before the model was built; on CUDA it is
``torch.cuda.max_memory_allocated``. ``--precision`` is ``trainer.precision`` (bf16: autocast, as in
training; fp32 on CUDA with TF32 matmuls). The backbone is
EfficientNet-B4 with random weights (same cost as the pretrained one). Ratios are against ``uniad``
measured in the same run. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SETTING = REPO_ROOT / "experiments" / "MVTec_3DAD" / "10_0_with_0_step" / "config.yaml"
VARIANTS_DIR = REPO_ROOT / "experiments" / "_base_" / "variants"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(variant: str, device_name: str, train_batch: int, infer_batch: int, iters: int, precision: str) -> dict:
    """One variant in this process: parameter counts, images/s and peak memory."""
    import torch

    from engine.batch import allow_tf32, autocast, float_outputs
    from models.model_helper import build_model
    from utils.config import load_config
    from utils.criterion_helper import build_criterion

    device = torch.device(device_name)
    base_rss = _status_kib("VmRSS")
    config = Path("/tmp") / f"throughput_{variant}.yaml"
    config.write_text(f"_base_: {json.dumps([str(SETTING), str(VARIANTS_DIR / (variant + '.yaml'))])}\n")
    cfg = load_config(config, ["model.net.backbone.kwargs.pretrained=false"])
    torch.manual_seed(0)
    model = build_model(cfg["model"], 224, 10).to(device)
    criterion = build_criterion(cfg["criterion"]["weights"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    allow_tf32(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_iter() -> None:
        x = torch.randn(train_batch, 3, 224, 224, device=device)
        with autocast(device, precision):
            outputs = model({"rgb": x, "depth": x})
        losses = criterion(float_outputs(outputs), {"class_id": torch.arange(train_batch) % 10})
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()

    @torch.no_grad()
    def infer_iter() -> None:
        x = torch.randn(infer_batch, 3, 224, 224, device=device)
        with autocast(device, precision):
            model({"rgb": x, "depth": x})

    rates = {}
    passes = (("train", train_iter, train_batch, True), ("infer", infer_iter, infer_batch, False))
    for name, step, batch, mode in passes:
        model.train(mode)
        step()  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            step()
        sync()
        rates[name] = batch * iters / (time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else (_status_kib("VmHWM") - base_rss) / 1024
    )
    return {
        "variant": variant,
        "trainable_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "frozen_m": sum(p.numel() for p in model.parameters() if not p.requires_grad) / 1e6,
        "train_ips": rates["train"],
        "infer_ips": rates["infer"],
        "peak_mib": peak,
    }


def main() -> None:
    """Measure every variant in its own process and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="uniad,iuf,ib_iumad_wo_ib,ib_iumad_wo_mamba,ib_iumad")
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--infer-batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.device, args.train_batch, args.infer_batch, args.iters,
                                 args.precision)))
        return
    rows = []
    for variant in args.variants.split(","):
        command = [sys.executable, __file__, "--worker", variant, "--device", args.device, "--precision",
                   args.precision, "--train-batch",
                   str(args.train_batch), "--infer-batch", str(args.infer_batch), "--iters", str(args.iters)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    ref = next((r for r in rows if r["variant"] == "uniad"), rows[0])
    memory = "peak MiB (max_memory_allocated)" if args.device == "cuda" else "peak MiB (RSS)"
    print(f"device {args.device}, {args.precision}, 224 px, train batch {args.train_batch}, inference batch "
          f"{args.infer_batch}, {args.iters} iterations; ratios vs {ref['variant']}\n")
    print(f"| variant | trainable M | frozen M | train img/s | × | infer img/s | × | {memory} | × |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['trainable_m']:.2f} | {r['frozen_m']:.2f} | {r['train_ips']:.2f} | "
              f"{r['train_ips'] / ref['train_ips']:.2f} | {r['infer_ips']:.2f} | "
              f"{r['infer_ips'] / ref['infer_ips']:.2f} | {r['peak_mib']:.0f} | "
              f"{r['peak_mib'] / ref['peak_mib']:.2f} |")


if __name__ == "__main__":
    main()
