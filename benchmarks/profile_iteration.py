"""Where one training iteration's time goes: backbone, conditioner (Mamba scan), MRNs, fusion, loss, backward.

``python benchmarks/profile_iteration.py [--config experiments/Synthetic3D/6_1_with_4_step/config.yaml]
[--iters 10] [--threads N] [--opts key=value ...]``

Builds the model of the config, feeds random batches of the config's size (``dataset.batch_size``
images of ``dataset.image_size`` px) and times each part with forward hooks (wall clock, CPU, one
process). The backbone and neck rows are what an iteration costs without the feature cache; with
the cache (the default on CPU) training pays every other row only. Prints one markdown table, with each
row's share of the cached iteration, then the device-to-host syncs (``aten::_local_scalar_dense``, what
``.item()``, ``float(t)`` and ``bool(t)`` of a tensor run; counted on the CPU, less the reads that are no
sync on CUDA) per iteration of the real step trainer (:class:`engine.trainer.StepTrainer` with its
logging hook, one epoch).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from engine.hooks import StepSpec  # noqa: E402
from engine.train_hooks import EpochLogger  # noqa: E402
from engine.trainer import StepTrainer  # noqa: E402
from models.model_helper import build_model  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.criterion_helper import build_criterion  # noqa: E402
from utils.optimizer import build_optimizer  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "experiments" / "Synthetic3D" / "6_1_with_4_step" / "config.yaml"


def _timed_parts(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    parts = {"backbone": model.backbone, "neck": model.neck}
    if model.conditioner is not None:
        parts["conditioner (Mamba / ViT)"] = model.conditioner
    for modality, network in model.reconstructions.items():
        parts[f"MRN {modality}"] = network
    parts["fusion"] = model.fusion
    return parts


def profile(cfg: dict, iters: int) -> dict[str, float]:
    """Mean seconds per training iteration of each part (forward hooks + explicit timers)."""
    size, batch = cfg["dataset"]["image_size"], cfg["dataset"]["batch_size"]
    classes = len(cfg["incremental"]["steps"][0]["classes"])
    torch.manual_seed(0)
    model = build_model(cfg["model"], size, classes).train()
    criterion = build_criterion(cfg["criterion"]["weights"])
    optimizer = build_optimizer(model, cfg["trainer"])
    totals: dict[str, float] = defaultdict(float)
    starts: dict[str, float] = {}
    handles = []
    for name, module in _timed_parts(model).items():
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: starts.__setitem__(n, time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda *_, n=name: totals.__setitem__(n, totals[n] + time.perf_counter() - starts[n])
        ))
    try:
        for iteration in range(iters + 1):
            if iteration == 1:  # the first iteration is a warm-up
                totals.clear()
            inputs = {m: torch.randn(batch, 3, size, size) for m in model.modalities}
            start = time.perf_counter()
            class_ids = torch.arange(batch) % classes  # as in training: labels pick the class adapters, if any
            outputs = model(inputs, class_ids=class_ids)
            forward_end = time.perf_counter()
            losses = criterion(outputs, {"class_id": class_ids})
            loss_end = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            end = time.perf_counter()
            totals["loss"] += loss_end - forward_end
            totals["backward + optimizer step"] += end - loss_end
            totals["whole iteration (no cache)"] += end - start
    finally:
        for handle in handles:
            handle.remove()
    return {name: value / iters for name, value in totals.items()}


def host_syncs_per_iteration(cfg: dict, iters: int) -> float:
    """Device-to-host syncs per iteration of one epoch of ``iters`` iterations of the step trainer."""
    size, batch = cfg["dataset"]["image_size"], cfg["dataset"]["batch_size"]
    classes = len(cfg["incremental"]["steps"][0]["classes"])
    torch.manual_seed(0)
    model = build_model(cfg["model"], size, classes).train()
    samples = [{"inputs": {m: torch.randn(3, size, size) for m in model.modalities},
                "class_id": torch.tensor(i % classes)} for i in range(batch * iters)]
    cfg = {**cfg, "trainer": {**cfg["trainer"], "save_every_epochs": 0}}
    spec = StepSpec(0, 1, samples, None, False, Path("."), list(range(classes)))
    trainer = StepTrainer(model, build_criterion(cfg["criterion"]["weights"]), spec, cfg, torch.device("cpu"),
                          [EpochLogger()])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        trainer.run()
    syncs = [e for e in prof.events() if e.name == "aten::_local_scalar_dense" and not _cpu_only(e)]
    return len(syncs) / iters


def _cpu_only(event) -> bool:
    """A scalar read that is no device sync on CUDA.

    AdamW's step counters are CPU tensors on every device, and ``one_hot`` checks its range on the CPU only
    when the class count is given.
    """
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer.step") or parent.name == "aten::one_hot":
            return True
        parent = parent.cpu_parent
    return False


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print the table; return seconds per iteration by part."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--opts", nargs="*", default=[])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.opts)
    seconds = profile(cfg, args.iters)
    cached = seconds["whole iteration (no cache)"] - seconds["backbone"] - seconds["neck"]
    print(f"{args.config.relative_to(REPO_ROOT) if args.config.is_relative_to(REPO_ROOT) else args.config}: "
          f"batch {cfg['dataset']['batch_size']}, {cfg['dataset']['image_size']} px, {args.iters} iterations, "
          f"{torch.get_num_threads()} threads\n")
    print("| part | ms / iteration | share of a cached iteration |")
    print("|---|---|---|")
    for name, value in seconds.items():
        share = "" if name in ("backbone", "neck", "whole iteration (no cache)") else f"{100 * value / cached:.0f} %"
        print(f"| {name} | {1000 * value:.1f} | {share} |")
    print(f"| cached iteration (all but backbone and neck) | {1000 * cached:.1f} | 100 % |")
    syncs = host_syncs_per_iteration(cfg, args.iters)
    print(f"\ndevice-to-host syncs per training iteration (step trainer, {args.iters} iterations): {syncs:.1f}")
    return {**seconds, "host_syncs_per_iteration": syncs}


if __name__ == "__main__":
    main()
