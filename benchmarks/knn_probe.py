"""Patch-kNN probe: how much anomaly signal a (frozen) backbone's features carry on a dataset.

For each class: a memory bank of the training images' feature vectors (every position of the neck's
feature map), each test image scored by the largest nearest-neighbour distance of its positions,
I-AUROC per modality (and per defect type: good images + that type). No training. Used to choose the
Synthetic3D backbone level (random weights).

``python benchmarks/knn_probe.py [--root data/Synthetic3D] [--config ...] [--opts key=value ...]``
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

from datasets import RGBDDataset, read_meta  # noqa: E402
from models.model_helper import build_model  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.metrics import image_auroc  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "experiments" / "Synthetic3D" / "6_1_with_4_step" / "config.yaml"


@torch.no_grad()
def _features(model, root: Path, records: list[dict], clsname: str, size: int):
    own = [r for r in records if r["clsname"] == clsname]
    dataset = RGBDDataset(root, own, {clsname: 0}, size, model.backbone.input_mean, model.backbone.input_std)
    feats: dict[str, list[torch.Tensor]] = {}
    labels, kinds = [], [r["label_name"] for r in records if r["clsname"] == clsname]
    for i in range(len(dataset)):
        sample = dataset[i]
        for modality, f in model.extract_features(sample["image"][None], sample["depth"][None]).items():
            feats.setdefault(modality, []).append(f[0].flatten(1).T)  # C×h×w -> (h·w)×C
        labels.append(sample["label"])
    return {m: torch.stack(v) for m, v in feats.items()}, np.array(labels), np.array(kinds)


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Print the probe's I-AUROC per class and modality, and the means; return ``{modality: per-class I-AUROC}``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "data" / "Synthetic3D")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--opts", nargs="*", default=[])
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.opts)
    size = cfg["dataset"]["image_size"]
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["model"], size, 1).eval()
    train, test = read_meta(args.root / "train.jsonl"), read_meta(args.root / "test.jsonl")
    classes = cfg["incremental"]["steps"][0]["classes"]
    scores: dict[str, list[float]] = {}
    by_defect: dict[tuple[str, str], list[float]] = {}
    for clsname in classes:
        bank, _, _ = _features(model, args.root, train, clsname, size)
        query, labels, kinds = _features(model, args.root, test, clsname, size)
        row = []
        for modality in bank:
            memory = bank[modality].reshape(-1, bank[modality].shape[-1])
            distance = torch.cdist(query[modality].flatten(0, 1), memory).min(1).values.reshape(len(labels), -1)
            image_scores = distance.max(1).values.numpy()
            scores.setdefault(modality, []).append(image_auroc(labels, image_scores))
            for defect in sorted(set(kinds) - {"good"}):
                keep = (kinds == "good") | (kinds == defect)
                by_defect.setdefault((defect, modality), []).append(image_auroc(labels[keep], image_scores[keep]))
            row.append(f"{modality} {scores[modality][-1]:.3f}")
        print(f"{clsname}: {', '.join(row)}")
    for defect in sorted({d for d, _ in by_defect}):
        print(f"{defect} (vs good): " + ", ".join(f"{m} {np.mean(by_defect[defect, m]):.3f}" for m in scores))
    print("mean: " + ", ".join(f"{m} {np.mean(v):.3f}" for m, v in scores.items()))
    return scores


if __name__ == "__main__":
    main()
