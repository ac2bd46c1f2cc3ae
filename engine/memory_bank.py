"""The training-free reference: a patch memory bank per class on the model's frozen features.

For each class: a memory bank of the training images' feature vectors (every position of the neck's
feature map), each test image scored by the largest nearest-neighbour distance of its positions to the
bank; I-AUROC per modality and fused (each modality's score z-scored with leave-one-out scores of the
training normals, then the max), and per defect type (good images + that type). A trained model on the
same features is read against it (``benchmarks/knn_probe.py``, ``tools/compare.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datasets import RGBDDataset
from utils.metrics import image_auroc

__all__ = ["MemoryBankScores", "knn_image_scores", "leave_one_out_scores", "fuse_by_zscore_max", "memory_bank_auroc"]


@torch.no_grad()
def _class_features(model: nn.Module, root: Path, records: list[dict], clsname: str, size: int):
    """Per modality ``(N, h·w, C)`` features of the class's records, their labels and label names."""
    own = [r for r in records if r["clsname"] == clsname]
    dataset = RGBDDataset(root, own, {clsname: 0}, size, model.backbone.input_mean, model.backbone.input_std,
                          model.modalities)
    features: dict[str, list[torch.Tensor]] = {}
    labels = []
    for i in range(len(dataset)):
        sample = dataset[i]
        for modality, f in model.extract_features({m: x[None] for m, x in sample["inputs"].items()}).items():
            features.setdefault(modality, []).append(f[0].flatten(1).T)  # C×h×w -> (h·w)×C
        labels.append(sample["label"])
    return {m: torch.stack(v) for m, v in features.items()}, np.array(labels), np.array([r["label_name"] for r in own])


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


@dataclass
class MemoryBankScores:
    """I-AUROC of the memory bank: ``by_class[map][i]`` for the i-th class, ``by_defect[(defect, map)]`` per class."""

    classes: list[str]
    by_class: dict[str, list[float]] = field(default_factory=dict)
    by_defect: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        """Map (``rgb``, ``depth``, ``fused``) → I-AUROC averaged over the classes."""
        return {m: float(np.mean(v)) for m, v in self.by_class.items()}


def memory_bank_auroc(
    model: nn.Module, root: Path, train: list[dict], test: list[dict], classes: list[str], size: int
) -> MemoryBankScores:
    """Score every class's test records against the memory bank of its training records.

    Args:
        model: a model whose :meth:`extract_features` gives the frozen features (only its backbone and neck run).
        root: dataset root of the records.
        train: training records (the banks).
        test: test records (scored).
        classes: the classes to score, in order.
        size: input side ``S``.
    """
    scores = MemoryBankScores(list(classes))
    for clsname in classes:
        bank, _, _ = _class_features(model, root, train, clsname, size)
        query, labels, kinds = _class_features(model, root, test, clsname, size)
        image_scores = {m: knn_image_scores(bank[m], query[m]) for m in bank}
        if len(bank) > 1:  # more than one modality
            image_scores["fused"] = fuse_by_zscore_max(image_scores, {m: leave_one_out_scores(bank[m]) for m in bank})
        for modality, values in image_scores.items():
            scores.by_class.setdefault(modality, []).append(image_auroc(labels, values))
            for defect in sorted(set(kinds) - {"good"}):
                keep = (kinds == "good") | (kinds == defect)
                scores.by_defect.setdefault((defect, modality), []).append(image_auroc(labels[keep], values[keep]))
    return scores
