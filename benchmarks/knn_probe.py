"""Patch-kNN probe: how much anomaly signal a (frozen) backbone's features carry on a dataset.

Prints, per class and per defect type, the I-AUROC of the per-class patch memory bank of
:mod:`engine.memory_bank` (per modality and fused). No training: the reference a trained model on the
same features is read against.

``python benchmarks/knn_probe.py [--config ...] [--root DIR] [--all-steps] [--opts key=value ...]``
(``--root`` defaults to the config's ``dataset.root``; missing meta files are built as ``tools/train_val.py`` does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from datasets import load_meta  # noqa: E402
from engine.memory_bank import memory_bank_auroc  # noqa: E402
from models.model_helper import build_model  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.errors import IUMADError, report_error  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "experiments" / "Synthetic3D" / "6_1_with_4_step" / "config.yaml"


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Print the probe's I-AUROC per class and modality (and fused), and the means; return them per class."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="default: the config's dataset.root")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--all-steps", action="store_true", help="every class of the setting, not only step 0's")
    parser.add_argument("--opts", nargs="*", default=[])
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.opts)
    size = cfg["dataset"]["image_size"]
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["model"], size, 1).eval()
    steps = cfg["incremental"]["steps"] if args.all_steps else cfg["incremental"]["steps"][:1]
    classes = [c for step in steps for c in step["classes"]]
    root = args.root or Path(cfg["dataset"]["root"])
    root = root if root.is_absolute() else REPO_ROOT / root
    meta_dir = Path(cfg["dataset"]["meta_dir"]) if args.root is None and cfg["dataset"]["meta_dir"] else root
    meta_dir = meta_dir if meta_dir.is_absolute() else REPO_ROOT / meta_dir
    train, test = load_meta(root, meta_dir, classes, cfg["dataset"]["layout"])
    scores = memory_bank_auroc(model, root, train, test, classes, size)
    for i, clsname in enumerate(classes):
        print(f"{clsname}: " + ", ".join(f"{m} {v[i]:.3f}" for m, v in scores.by_class.items()))
    for defect in sorted({d for d, _ in scores.by_defect}):
        print(f"{defect} (vs good): "
              + ", ".join(f"{m} {np.mean(scores.by_defect[defect, m]):.3f}" for m in scores.by_class))
    print("mean: " + ", ".join(f"{m} {v:.3f}" for m, v in scores.means().items()))
    return scores.by_class


if __name__ == "__main__":
    try:
        main()
    except IUMADError as exc:
        sys.exit(report_error(exc))
