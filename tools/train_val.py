"""Train and evaluate an incremental setting: ``python tools/train_val.py --config CONFIG [...]``.

Without ``--step`` every step of the setting runs in order; ``--step K`` runs step K from
``<output>/step_<K-1>/ckpt.pth``; ``--evaluate`` re-evaluates a finished step. One process by
default; ``torchrun --nproc_per_node=N tools/train_val.py ...`` trains with DDP.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from engine.batch import allow_tf32  # noqa: E402
from engine.incremental import IncrementalRun, RunOptions  # noqa: E402
from utils.config import config_to_yaml, load_config  # noqa: E402
from utils.dist import (  # noqa: E402
    cleanup_distributed,
    gather_objects_to_main,
    get_rank,
    init_distributed,
    is_main_process,
    is_peer_failure,
)
from utils.errors import IUMADError, report_error  # noqa: E402
from utils.fileio import atomic_write_text  # noqa: E402
from utils.logger import setup_logging  # noqa: E402

LOGGER = logging.getLogger("train_val")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiments/<Dataset>/<setting>/config.yaml")
    parser.add_argument("--step", type=int, default=None, help="run (or with --evaluate, evaluate) step K only")
    parser.add_argument("--evaluate", action="store_true", help="evaluate the last finished (or --step) checkpoint")
    parser.add_argument("--resume", action="store_true", help="skip finished steps, continue a killed one")
    parser.add_argument("--overwrite", action="store_true", help="train again over an existing run")
    parser.add_argument("--output", default=None, help="run folder (default outputs/<Dataset>/<setting>)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser.parse_args(argv)


def default_output(config_path: Path, cfg: dict) -> Path:
    """``outputs/<Dataset>/<setting>`` under the repository root (setting = the config's folder name)."""
    return REPO_ROOT / "outputs" / cfg["dataset"]["name"] / config_path.resolve().parent.name


def resolve_paths(cfg: dict) -> dict:
    """Relative ``dataset.root`` / ``dataset.meta_dir`` are relative to the repository root."""
    for key in ("root", "meta_dir"):
        value = cfg["dataset"][key]
        if value is not None and not Path(value).is_absolute():
            cfg["dataset"][key] = str(REPO_ROOT / value)
    return cfg


def prepare_output(output: Path) -> None:
    """Create the run folder or say why it cannot be used."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IUMADError(f"cannot create output directory {output}: {exc.strerror or exc}") from None
    if not os.access(output, os.W_OK):
        raise IUMADError(f"output directory is not writable: {output}")


def log_peak_memory(device: torch.device) -> None:
    """Log every rank's peak resident memory (MiB) on rank 0, so a run's log shows what each process needed.

    The main process of each rank only: DataLoader worker processes (``dataset.workers`` > 0) come on top. On
    CUDA, each rank's peak GPU memory allocated by tensors follows.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    peaks = gather_objects_to_main((peak / (2**20 if sys.platform == "darwin" else 2**10), gpu))
    if peaks is None:
        return
    text = ", ".join(f"{host:.0f}" for host, _ in peaks)
    if gpu is not None:
        text += "; peak GPU memory per rank: " + ", ".join(f"{g:.0f}" for _, g in peaks)
    LOGGER.info("peak resident memory per rank: %s MiB (main processes)", text)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    try:
        cfg = resolve_paths(load_config(args.config, args.opts))
        device = init_distributed()
        allow_tf32(device)
        output = Path(args.output) if args.output else default_output(Path(args.config), cfg)
        if is_main_process():
            prepare_output(output)
        setup_logging(output / "train_val.log" if not args.evaluate else None, get_rank())
        run = IncrementalRun(cfg, output, device, args.config)
        options = RunOptions(args.step, args.evaluate, args.resume, args.overwrite)
        run.prepare(options)
        if is_main_process() and not args.evaluate:
            atomic_write_text(output / "config.yaml", config_to_yaml(cfg))
            from torch.utils.tensorboard import SummaryWriter

            run.writer = SummaryWriter(str(output / "tensorboard"))
        LOGGER.info("config %s -> output %s on %s", args.config, output, device)
        run.run(options)
        log_peak_memory(device)
        if run.writer is not None:
            run.writer.close()
    except IUMADError as exc:
        return report_error(exc)
    except PermissionError as exc:
        print(f"error: permission denied: {exc.filename or exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if not is_peer_failure(exc):
            raise
        # Not an "error:" line: the process that failed printed the one naming the cause.
        print(f"stopped: another process of this run failed or hung (rank {get_rank()} ends too): "
              f"{str(exc).splitlines()[0][:200]}", file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
