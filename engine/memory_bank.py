"""The training-free reference: a patch memory bank per class on the model's frozen features.

For each class: a memory bank of the training images' feature vectors (every position of the neck's
feature map), each test image scored by the largest nearest-neighbour distance of its positions to the
bank (with ``model.score_region: object``, of its positions on the object footprint, as the trained model
is scored); I-AUROC per modality and fused (each modality's score z-scored with leave-one-out scores of the
training normals, then the max), and per defect type (good images + that type). A trained model on the
same features is read against it (``benchmarks/knn_probe.py``, ``tools/compare.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datasets import RGBDDataset
from utils.metrics import image_auroc

__all__ = ["ClassFeatures", "MemoryBankScores", "knn_image_scores", "leave_one_out_scores", "fuse_by_zscore_max",
           "memory_bank_auroc"]


@dataclass
class ClassFeatures:
    """One class's records on the frozen features.

    ``features`` modality → ``(N, P, C)`` (P = h·w positions), ``regions`` ``(N, P)`` bool (the positions scored;
    ``None``: all), ``labels`` ``(N,)`` and ``kinds`` ``(N,)`` label names.
    """

    features: dict[str, torch.Tensor]
    regions: torch.Tensor | None
    labels: np.ndarray
    kinds: np.ndarray


@torch.no_grad()
def _class_features(model: nn.Module, root: Path, records: list[dict], clsname: str, size: int) -> ClassFeatures:
    """The class's records on the model's frozen features; on the object, a position counts if it touches it."""
    own = [r for r in records if r["clsname"] == clsname]
    on_object = model.score_region == "object"
    dataset = RGBDDataset(root, own, {clsname: 0}, size, model.backbone.input_mean, model.backbone.input_std,
                          model.modalities, foreground=on_object)
    features: dict[str, list[torch.Tensor]] = {}
    regions, labels = [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        inputs = {m: x[None] for m, x in sample["inputs"].items()}
        extracted = model.extract_features(inputs)
        for modality, f in extracted.items():
            features.setdefault(modality, []).append(f[0].flatten(1).T)  # C×h×w -> (h·w)×C
        if on_object:  # a token counts where it touches the footprint
            grid = next(iter(extracted.values())).shape[-2:]
            regions.append((F.adaptive_max_pool2d(inputs["foreground"], grid) > 0).flatten())
        labels.append(sample["label"])
    return ClassFeatures({m: torch.stack(v) for m, v in features.items()}, torch.stack(regions) if on_object else None,
                         np.array(labels), np.array([r["label_name"] for r in own]))


def knn_image_scores(bank: torch.Tensor, query: torch.Tensor, region: torch.Tensor | None = None) -> np.ndarray:
    """Largest nearest-neighbour distance of each query image's positions (in ``region``) to a memory bank.

    Args:
        bank: ``(N, P, C)`` training features (N images, P positions).
        query: ``(M, P, C)`` features to score.
        region: ``(M, P)`` bool, the positions that count (each row with at least one); ``None``: all.

    Returns:
        ``(M,)`` image scores (feature-space L2 units).
    """
    memory = bank.reshape(-1, bank.shape[-1])
    distance = torch.cdist(query.flatten(0, 1), memory).min(1).values.reshape(len(query), -1)
    if region is not None:
        distance = distance.masked_fill(~region, float("-inf"))
    return distance.max(1).values.numpy()


def leave_one_out_scores(bank: torch.Tensor, region: torch.Tensor | None = None) -> np.ndarray:
    """``(N,)`` score of each training image (its ``region`` ``(N, P)``) against the bank of the other N - 1."""
    keep = torch.ones(len(bank), dtype=torch.bool)
    scores = []
    for i in range(len(bank)):
        keep[i] = False
        scores.append(knn_image_scores(bank[keep], bank[i : i + 1], None if region is None else region[i : i + 1])[0])
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
        model: a model whose :meth:`extract_features` gives the frozen features (only its backbone and neck run);
            its ``score_region`` says which positions of an image count.
        root: dataset root of the records.
        train: training records (the banks).
        test: test records (scored).
        classes: the classes to score, in order.
        size: input side ``S``.
    """
    scores = MemoryBankScores(list(classes))
    for clsname in classes:
        bank = _class_features(model, root, train, clsname, size)
        query = _class_features(model, root, test, clsname, size)
        labels, kinds = query.labels, query.kinds
        image_scores = {m: knn_image_scores(bank.features[m], query.features[m], query.regions) for m in bank.features}
        if len(bank.features) > 1:  # more than one modality
            normals = {m: leave_one_out_scores(bank.features[m], bank.regions) for m in bank.features}
            image_scores["fused"] = fuse_by_zscore_max(image_scores, normals)
        for modality, values in image_scores.items():
            scores.by_class.setdefault(modality, []).append(image_auroc(labels, values))
            for defect in sorted(set(kinds) - {"good"}):
                keep = (kinds == "good") | (kinds == defect)
                scores.by_defect.setdefault((defect, modality), []).append(image_auroc(labels[keep], values[keep]))
    return scores
