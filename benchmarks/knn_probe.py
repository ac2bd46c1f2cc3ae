"""Patch-kNN probe: how much anomaly signal a (frozen) backbone's features carry on a dataset.

For each class: a memory bank of the training images' feature vectors (every position of the neck's
feature map), each test image scored by the largest nearest-neighbour distance of its positions,
I-AUROC per modality and fused (each modality's score z-scored with leave-one-out scores of the
training normals, then the max), and per defect type (good images + that type). No training: the
reference a trained model on the same features is read against.

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

from datasets import RGBDDataset, read_meta, write_meta  # noqa: E402
from models.model_helper import build_model  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.errors import DataError, IUMADError, report_error  # noqa: E402
from utils.metrics import image_auroc  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "experiments" / "Synthetic3D" / "6_1_with_4_step" / "config.yaml"


@torch.no_grad()
def _features(model, root: Path, records: list[dict], clsname: str, size: int):
    own = [r for r in records if r["clsname"] == clsname]
    dataset = RGBDDataset(root, own, {clsname: 0}, size, model.backbone.input_mean, model.backbone.input_std)
    feats: dict[str, list[torch.Tensor]] = {}
    labels, kinds = [], [r["label_name"] for r in own]
    for i in range(len(dataset)):
        sample = dataset[i]
        for modality, f in model.extract_features(sample["image"][None], sample["depth"][None]).items():
            feats.setdefault(modality, []).append(f[0].flatten(1).T)  # C×h×w -> (h·w)×C
        labels.append(sample["label"])
    return {m: torch.stack(v) for m, v in feats.items()}, np.array(labels), np.array(kinds)


def knn_image_scores(bank: torch.Tensor, query: torch.Tensor) -> np.ndarray:
    """Largest nearest-neighbour distance of each query image's positions to a memory bank.

    Args:
        bank: ``(N, P, C)`` training features (N images, P positions).
        query: ``(M, P, C)`` features to score.

    Returns:
        ``(M,)`` image scores (feature-space L2 units).
    """
    memory = bank.reshape(-1, bank.shape[-1])
    distance = torch.cdist(query.flatten(0, 1), memory).min(1).values.reshape(len(query), -1)
    return distance.max(1).values.numpy()


def leave_one_out_scores(bank: torch.Tensor) -> np.ndarray:
    """``(N,)`` score of each training image against the bank of the other N - 1 (the normals' score spread)."""
    keep = torch.ones(len(bank), dtype=torch.bool)
    scores = []
    for i in range(len(bank)):
        keep[i] = False
        scores.append(knn_image_scores(bank[keep], bank[i : i + 1])[0])
        keep[i] = True
    return np.array(scores)


def fuse_by_zscore_max(test: dict[str, np.ndarray], normals: dict[str, np.ndarray]) -> np.ndarray:
    """Fused image score: each modality's score z-scored with its training normals' scores, then the max."""
    z = [(test[m] - normals[m].mean()) / max(normals[m].std(), 1e-12) for m in test]
    return np.max(np.stack(z), axis=0)


def load_records(root: Path, meta_dir: Path, classes: list[str]) -> tuple[list[dict], list[dict]]:
    """Train and test meta records of ``root`` (meta files built when missing), checked to hold every class.

    Raises:
        DataError: the root is missing, or a class has no train or no test sample there.
    """
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root} (dataset.root of the config, or --root)")
    if not (meta_dir / "train.jsonl").is_file() or not (meta_dir / "test.jsonl").is_file():
        write_meta(root, meta_dir)
    train, test = read_meta(meta_dir / "train.jsonl"), read_meta(meta_dir / "test.jsonl")
    for split, records in (("train", train), ("test", test)):
        missing = [c for c in classes if not any(r["clsname"] == c for r in records)]
        if missing:
            known = ", ".join(sorted({r["clsname"] for r in records}))
            raise DataError(f"class '{missing[0]}' has no {split} samples in {meta_dir / (split + '.jsonl')}; "
                            f"classes there: {known}")
    return train, test


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
    train, test = load_records(root, meta_dir if meta_dir.is_absolute() else REPO_ROOT / meta_dir, classes)
    scores: dict[str, list[float]] = {}
    by_defect: dict[tuple[str, str], list[float]] = {}
    for clsname in classes:
        bank, _, _ = _features(model, root, train, clsname, size)
        query, labels, kinds = _features(model, root, test, clsname, size)
        image_scores = {m: knn_image_scores(bank[m], query[m]) for m in bank}
        if len(bank) > 1:  # more than one modality
            image_scores["fused"] = fuse_by_zscore_max(image_scores, {m: leave_one_out_scores(bank[m]) for m in bank})
        for modality, values in image_scores.items():
            scores.setdefault(modality, []).append(image_auroc(labels, values))
            for defect in sorted(set(kinds) - {"good"}):
                keep = (kinds == "good") | (kinds == defect)
                by_defect.setdefault((defect, modality), []).append(image_auroc(labels[keep], values[keep]))
        print(f"{clsname}: " + ", ".join(f"{m} {v[-1]:.3f}" for m, v in scores.items()))
    for defect in sorted({d for d, _ in by_defect}):
        print(f"{defect} (vs good): " + ", ".join(f"{m} {np.mean(by_defect[defect, m]):.3f}" for m in scores))
    print("mean: " + ", ".join(f"{m} {np.mean(v):.3f}" for m, v in scores.items()))
    return scores


if __name__ == "__main__":
    try:
        main()
    except IUMADError as exc:
        sys.exit(report_error(exc))
