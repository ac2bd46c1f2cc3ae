"""Decision thresholds from held-out training normals (never test images).

At the end of every step the model scores the step's held-out training normals
(``trainer.val_fraction`` of each class's training images, which never train); their image scores are
stored per class in the checkpoint (:func:`normal_score_statistics`). ``tools/predict.py`` calls an
input anomalous when its image score exceeds its predicted class's threshold, by default the
``DEFAULT_QUANTILE`` quantile of that class's held-out normal scores (:func:`class_threshold`): on
normals like the held-out ones that flags about ``1 - quantile`` of the parts (the false-alarm
rate), up to the sampling error of the few held-out images (with ``n`` of them, the highest score
already sits near the ``n / (n + 1)`` quantile).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["DEFAULT_QUANTILE", "normal_score_statistics", "normal_map_statistics", "class_threshold"]

DEFAULT_QUANTILE = 0.99


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
    """Per class and modality, the mean and std over every pixel of the held-out normals' maps.

    Args:
        records: evaluator records of normal images with ``clsname`` and ``<m>.map`` ``(H, W)`` per modality.

    Returns:
        class → modality → ``(mean, std)``, what :class:`models.map_fusion.NormalMapFusion` standardises with.
    """
    by_class: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        by_class[record["clsname"]].append(record)
    statistics = {}
    for name, rows in sorted(by_class.items()):
        keys = [k for k in rows[0] if k.endswith(".map")]
        maps = {k.removesuffix(".map"): np.stack([r[k] for r in rows]).astype(np.float64) for k in keys}
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


def class_threshold(statistics: Mapping[str, Any], quantile: float = DEFAULT_QUANTILE) -> float:
    """The decision threshold of one class: the ``quantile`` of its held-out normal scores (linear interpolation).

    Raises:
        ValueError: ``quantile`` outside [0, 1] or no stored score.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    scores = statistics.get("scores") or []
    if not scores:
        raise ValueError("no held-out normal score stored for this class")
    return float(np.quantile(np.asarray(scores, dtype=np.float64), quantile))
