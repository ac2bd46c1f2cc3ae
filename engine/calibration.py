"""Decision thresholds from held-out training normals (never test images).

At the end of every step the model scores the step's held-out training normals
(``trainer.val_fraction`` of each class's training images, which never train); their image scores are
stored per class in the checkpoint (:func:`normal_score_statistics`). ``tools/predict.py`` calls an
input anomalous when its image score exceeds its predicted class's :class:`DecisionThreshold`
(:func:`decision_thresholds`): the conformal rank ``k = ⌈(n + 1)·q⌉`` of ``n`` held-out scores, which a new
normal exceeds with probability ``1 − k / (n + 1) ≤ 1 − q`` when it is exchangeable with them. Where the
image scores share one scale (``model.map_fusion: normal_zmax`` standardises each class's map against its
own training images' maps) the classes' scores are pooled, so ``n`` is the number of held-out normals of all
classes; otherwise each class has its own ``n``. When ``n`` is too small for the asked rate (``k > n``) the
highest score is the threshold and its rate ``1 / (n + 1)`` is what is reported, never ``1 − q``.
:func:`calibrate_step` does both fits of a step: the fused map's statistics (``normal_zmax``, from the step's
training images), then the stored scores (of the held-out normals, which nothing else is fitted on).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from datasets import RGBDDataset
from engine.evaluator import score_dataset
from utils.dist import broadcast_object

__all__ = ["DEFAULT_QUANTILE", "DecisionThreshold", "normal_score_statistics", "normal_map_statistics",
           "conformal_threshold", "decision_thresholds", "fit_map_fusion", "training_map_statistics", "calibrate_step"]

LOGGER = logging.getLogger(__name__)

#: The asked false-alarm rate is 1 − this; chosen on the development copy (docs/method.md, decision thresholds).
DEFAULT_QUANTILE = 0.95


def normal_score_statistics(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-class statistics of held-out normal image scores.

    Args:
        records: evaluator records (:func:`engine.evaluator.score_dataset`) with ``clsname``, ``label``
            (must be 0: normals only) and ``score`` (fused image score), and ``<m>.score`` per modality.

    Returns:
        class → ``{"n", "mean", "std", "max", "scores"}`` of the fused scores (``scores`` sorted, plain floats),
        plus ``"modalities"``: modality → ``{"mean", "std"}``.

    Raises:
        ValueError: a record is not a normal image.
    """
    by_class: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        if int(record["label"]) != 0:
            raise ValueError(f"calibration takes normal images only; a record of class {record['clsname']} is not")
        by_class[record["clsname"]].append(record)
    return {name: _statistics(rows) for name, rows in sorted(by_class.items())}


def normal_map_statistics(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per class and modality, the mean and std over every scored pixel of normal images' maps.

    Args:
        records: evaluator records of normal images with ``clsname``, ``<m>.map`` ``(H, W)`` per modality and,
            where maps are scored on the object (``model.score_region: object``), ``region`` ``(H, W)`` bool: only
            those pixels count (the others hold the map's minimum, not an error).

    Returns:
        class → modality → ``(mean, std)``, what :class:`models.map_fusion.NormalMapFusion` standardises with.
    """
    by_class: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        by_class[record["clsname"]].append(record)
    statistics = {}
    for name, rows in sorted(by_class.items()):
        keys = [k for k in rows[0] if k.endswith(".map")]
        scored = np.stack([r["region"] if "region" in r else np.ones(r[keys[0]].shape, bool) for r in rows])
        maps = {k.removesuffix(".map"): np.stack([r[k] for r in rows]).astype(np.float64)[scored] for k in keys}
        statistics[name] = {m: (float(v.mean()), float(v.std())) for m, v in maps.items()}
    return statistics


def _statistics(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    scores = np.sort(np.array([float(r["score"]) for r in rows], dtype=np.float64))
    modalities = {
        key.removesuffix(".score"): {
            "mean": float(np.mean([r[key] for r in rows])),
            "std": float(np.std([r[key] for r in rows])),
        }
        for key in rows[0]
        if key.endswith(".score")
    }
    return {
        "n": len(scores),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "max": float(scores[-1]),
        "scores": [float(s) for s in scores],
        "modalities": modalities,
    }


@dataclass(frozen=True)
class DecisionThreshold:
    """An image-score threshold and the false-alarm rate it keeps.

    Attributes:
        value: the threshold; a score above it is anomalous.
        false_alarm: the expected share of normals like the held-out ones that score above it, ``1 − k / (n + 1)``.
        n: the held-out normal scores it was taken from.
        pooled: whether those are the scores of every class (one scale) or of the class alone.
    """

    value: float
    false_alarm: float
    n: int
    pooled: bool


def conformal_threshold(scores: Sequence[float], quantile: float = DEFAULT_QUANTILE,
                        pooled: bool = False) -> DecisionThreshold:
    """The ``k = ⌈(n + 1)·quantile⌉``-th smallest of ``n`` scores (the highest one when ``k > n``).

    Raises:
        ValueError: ``quantile`` outside [0, 1] or no score.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    if not len(scores):
        raise ValueError("no held-out normal score stored for this class")
    n = len(scores)
    rank = min(n, max(1, math.ceil(round((n + 1) * quantile, 9))))
    return DecisionThreshold(float(sorted(scores)[rank - 1]), 1.0 - rank / (n + 1), n, pooled)


def decision_thresholds(normal_scores: Mapping[str, Mapping[str, Any]], classes: Sequence[str], quantile: float,
                        pooled: bool) -> dict[str, DecisionThreshold]:
    """Each class's threshold: from the held-out scores of every class in ``classes`` (``pooled``) or its own.

    Args:
        normal_scores: class → :func:`normal_score_statistics` entry (its ``scores``).
        classes: the classes to decide for; each must be in ``normal_scores``.
        quantile: ``1 −`` the asked false-alarm rate.
        pooled: pool the classes' scores (they share one scale, ``model.map_fusion: normal_zmax``).
    """
    if pooled:
        shared = conformal_threshold([s for c in classes for s in normal_scores[c]["scores"]], quantile, True)
        return {c: shared for c in classes}
    return {c: conformal_threshold(normal_scores[c]["scores"], quantile) for c in classes}


def fit_map_fusion(model: nn.Module, fitted: Mapping[str, Mapping[str, tuple[float, float]]], new_classes: list[str],
                    classes: list[str], step: int) -> None:
    """Set each new class's map statistics; a class without usable ones falls back to the pooled statistics."""
    for name in new_classes:
        statistics = fitted.get(name)
        usable = statistics is not None and all(
            math.isfinite(mean) and math.isfinite(std) and std > 0 for mean, std in statistics.values()
        )
        if usable:
            model.map_fusion.set_statistics(classes.index(name), statistics)
        else:
            LOGGER.warning(
                "step %d: class %s has no usable training normal maps (%s); its fused map uses the statistics "
                "pooled over the other classes", step, name,
                "no training image" if statistics is None else f"mean, std {statistics}",
            )


def training_map_statistics(
    model: nn.Module, scored_train: RGBDDataset, new_classes: list[str], cfg: dict, device: torch.device
) -> dict[str, dict[str, tuple[float, float]]]:
    """:func:`normal_map_statistics` of the new classes' training images, scored one class at a time.

    One class's maps at a time bound the memory (a class of MVTec 3D-AD: about 250 maps per modality). Returns
    the statistics on every rank.
    """
    dcfg, precision = cfg["dataset"], cfg["trainer"]["precision"]
    statistics: dict[str, dict[str, tuple[float, float]]] = {}
    for name in new_classes:
        own = [i for i, record in enumerate(scored_train.records) if record["clsname"] == name]
        if not own:
            continue
        records = score_dataset(model, Subset(scored_train, own), device, dcfg["eval_batch_size"], precision,
                                dcfg["workers"])
        statistics.update(normal_map_statistics(records))  # rank 0 only; the others get them below
    return broadcast_object(statistics)


def calibrate_step(
    model: nn.Module, scored_train: RGBDDataset, held_out: Dataset | None, new_classes: list[str], classes: list[str],
    step: int, cfg: dict, device: torch.device,
) -> dict[str, dict[str, Any]]:
    """At the end of a step: fit the fused map's statistics (with ``normal_zmax``), then score the held-out normals.

    The map statistics come from the step's training images, the thresholds from the held-out normals alone:
    held-out scores standardised with statistics of those same few images would be too low for new normals,
    and the thresholds would flag more of them than they promise.

    Args:
        model: the trained (unwrapped) model.
        scored_train: the step's training images as the model scores them (:meth:`engine.run_data.RunData.dataset`).
        held_out: the step's held-out training normals, or ``None`` when no class kept one back.
        new_classes: the classes the step learned.
        classes: every class seen so far, in class-index order.
        step: the step index (for messages).
        cfg: the resolved config (batch size, precision, workers).
        device: this process's device.

    Returns:
        :func:`normal_score_statistics` of the held-out normals, on every rank (empty without any).
    """
    if model.map_fusion is not None:
        fit_map_fusion(model, training_map_statistics(model, scored_train, new_classes, cfg, device), new_classes,
                       classes, step)
    if held_out is None:
        return {}
    dcfg = cfg["dataset"]
    records = score_dataset(model, held_out, device, dcfg["eval_batch_size"], cfg["trainer"]["precision"],
                            dcfg["workers"])
    statistics = broadcast_object(normal_score_statistics(records))
    LOGGER.info("step %d: thresholds calibrated on %d held-out training normals", step, len(records))
    return statistics
