"""Evaluation metrics of the paper's experiment tables (paper-notes.md, "Metrics").

* I-AUROC: ROC-AUC of the image scores of one class (:func:`image_auroc`).
* P-AUROC: ROC-AUC over all pixels of all test images of one class (:func:`pixel_auroc`).
* AUPRO@limit: area under the per-region-overlap curve up to a false-positive-rate limit, divided
  by the limit (:func:`aupro`); ``mode="exact"`` is the official MVTec definition, ``mode="compat"``
  the 200-threshold approximation that most anomaly-detection code bases report.
* FM: forgetting measure over the incremental steps (:func:`forgetting_measure`).

Every function is pure: numpy arrays in, a Python float out. Inputs are validated and
programming errors (bad shapes, non-binary masks, non-finite scores, a metric that is undefined
for the data) raise ``ValueError`` saying what was expected and what was found; the caller decides
what to do with an undefined metric (for example a class whose test set has no anomalous pixel).
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Literal

import cv2
import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

__all__ = ["image_auroc", "pixel_auroc", "aupro", "forgetting_measure", "COMPAT_NUM_THRESHOLDS"]

LOGGER = logging.getLogger(__name__)

#: Number of thresholds of the common ``compute_pro`` approximation (RD4AD and its many descendants).
COMPAT_NUM_THRESHOLDS = 200

# 8-connectivity inside each image of an (N, H, W) stack and no connection between images.
_REGION_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_REGION_STRUCTURE[1] = True
_REGION_STRUCTURE.setflags(write=False)


# ----------------------------------------------------------------------------------------- input checks
def _as_scores(values: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """Return ``values`` as a finite float32/float64 array with ``ndim`` dimensions."""
    arr = np.asarray(values)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, found shape {arr.shape}")
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ValueError(f"{name}: expected real numbers, found dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, found {int(np.count_nonzero(~np.isfinite(arr)))} NaN/inf")
    return arr


def _as_binary(values: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """Return ``values`` (0/1 or bool) as a boolean array with ``ndim`` dimensions."""
    arr = np.asarray(values)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, found shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name}: expected 0/1 values, found dtype {arr.dtype}")
    binary = arr != 0
    if not np.array_equal(arr, binary):
        bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5]
        raise ValueError(f"{name}: expected only 0 and 1, found other values such as {bad.tolist()}")
    return binary


def _resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinearly resize every map of ``maps`` (N, h, w) to (N, height, width)."""
    if maps.shape[1:] == (height, width):
        return maps
    LOGGER.debug("resizing %d anomaly maps from %s to %s", maps.shape[0], maps.shape[1:], (height, width))
    out = np.empty((maps.shape[0], height, width), dtype=maps.dtype)
    for i, amap in enumerate(maps):
        out[i] = cv2.resize(np.ascontiguousarray(amap), (width, height), interpolation=cv2.INTER_LINEAR)
    return out


def _pixel_inputs(masks: ArrayLike, maps: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate pixel-level inputs; return masks (N, H, W) bool and maps (N, H, W) at mask size."""
    mask_arr = _as_binary(masks, "masks (N, H, W)", 3)
    map_arr = _as_scores(maps, "maps (N, h, w)", 3)
    if mask_arr.shape[0] != map_arr.shape[0]:
        raise ValueError(
            f"masks and maps must hold the same number of images, found {mask_arr.shape[0]} masks "
            f"{mask_arr.shape} and {map_arr.shape[0]} maps {map_arr.shape}"
        )
    if mask_arr.shape[0] == 0 or 0 in mask_arr.shape[1:] or 0 in map_arr.shape[1:]:
        raise ValueError(f"expected non-empty masks and maps, found shapes {mask_arr.shape} and {map_arr.shape}")
    return mask_arr, _resize_maps(map_arr, mask_arr.shape[1], mask_arr.shape[2])


def _need_both(num_pos: int, num_neg: int, what: str, pos: str, neg: str) -> None:
    """Raise when a ROC-type metric is undefined because one of the two groups is empty."""
    if num_pos == 0 or num_neg == 0:
        raise ValueError(f"{what} needs both {pos} and {neg}, found {num_pos} {pos} and {num_neg} {neg}")


# -------------------------------------------------------------------------------------------- AUROC
def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC-AUC = P(pos > neg) + P(pos == neg) / 2 (the trapezoid ROC area, ties included).

    Both groups are sorted (no argsort) and the smaller one is located in the larger one, which is
    several times faster than :func:`sklearn.metrics.roc_auc_score` on millions of pixels.
    """
    pos = np.sort(pos.ravel())
    neg = np.sort(neg.ravel())
    if pos.size <= neg.size:
        below = np.searchsorted(neg, pos, side="left")  # per positive: negatives < it
        at_or_below = np.searchsorted(neg, pos, side="right")  # per positive: negatives <= it
        wins = below.sum(dtype=np.int64) + 0.5 * (at_or_below - below).sum(dtype=np.int64)
    else:
        below = np.searchsorted(pos, neg, side="left")  # per negative: positives < it
        at_or_below = np.searchsorted(pos, neg, side="right")  # per negative: positives <= it
        wins = (pos.size - at_or_below).sum(dtype=np.int64) + 0.5 * (at_or_below - below).sum(dtype=np.int64)
    return float(wins / (float(pos.size) * float(neg.size)))


def image_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Image-level ROC-AUC (I-AUROC) of one class.

    Args:
        labels: (N,) 0 = good, 1 = anomalous (bool or numbers).
        scores: (N,) image anomaly scores, higher = more anomalous.

    Returns:
        The area under the ROC curve in [0, 1]; tied scores count one half.

    Raises:
        ValueError: wrong shapes, non-binary labels, non-finite scores, or only one kind of image
            (AUROC is undefined without both good and anomalous images).
    """
    label_arr = _as_binary(labels, "labels (N,)", 1)
    score_arr = _as_scores(scores, "scores (N,)", 1)
    if label_arr.shape != score_arr.shape:
        raise ValueError(f"labels and scores must have the same shape, found {label_arr.shape} and {score_arr.shape}")
    num_pos = int(np.count_nonzero(label_arr))
    _need_both(num_pos, label_arr.size - num_pos, "image_auroc", "anomalous images", "good images")
    return _auroc(score_arr[label_arr], score_arr[~label_arr])


def pixel_auroc(masks: ArrayLike, maps: ArrayLike) -> float:
    """Pixel-level ROC-AUC (P-AUROC) over all pixels of all test images of one class.

    Args:
        masks: (N, H, W) ground truth, 1 = anomalous pixel.
        maps: (N, h, w) anomaly maps; bilinearly resized to (H, W) when the sizes differ.

    Returns:
        The area under the pixel ROC curve in [0, 1].

    Raises:
        ValueError: wrong shapes, non-binary masks, non-finite maps, or no anomalous / no normal pixel.
    """
    mask_arr, map_arr = _pixel_inputs(masks, maps)
    num_pos = int(np.count_nonzero(mask_arr))
    _need_both(num_pos, mask_arr.size - num_pos, "pixel_auroc", "anomalous pixels", "normal pixels")
    return _auroc(map_arr[mask_arr], map_arr[~mask_arr])


# -------------------------------------------------------------------------------------------- AUPRO
def _region_weights(mask: np.ndarray) -> np.ndarray:
    """Per anomalous pixel (in ``mask[mask]`` order): 1 / (number of regions * size of its region).

    Regions are the 8-connected components of each image's mask, so the weights of a region sum to
    1 / num_regions and PRO(t) is the sum of the weights of the anomalous pixels scoring >= t.
    """
    labels, num_regions = ndimage.label(mask, structure=_REGION_STRUCTURE)
    region_of_pixel = labels[mask]  # (num_anomalous_pixels,), values 1..num_regions
    sizes = np.bincount(region_of_pixel, minlength=num_regions + 1)
    return 1.0 / (num_regions * sizes[region_of_pixel].astype(np.float64))


def _aupro_exact(anom: np.ndarray, weights: np.ndarray, normal: np.ndarray, fpr_limit: float) -> float:
    """Exact normalised area under the PRO curve up to ``fpr_limit``.

    The official curve has one point per distinct score t, (FPR(t), PRO(t)) with ``>= t``, plus
    (0, 0); it is integrated with the trapezoid rule and linearly interpolated at the limit. As
    PRO(t) is the weighted count of anomalous pixels >= t, that integral splits into one term per
    anomalous pixel j: its indicator rises linearly from 0 to 1 between a_j = FPR(> s_j) and
    b_j = FPR(>= s_j) (the curve points just before and at its score, so tied scores are merged)
    and stays 1 afterwards. Its area up to the limit L is

        0                                if L <= a_j
        (L - a_j)^2 / (2 (b_j - a_j))    if a_j < L < b_j
        (L - b_j) + (b_j - a_j) / 2      if b_j <= L

    and the AUPRO is sum_j weight_j * area_j / L. Only the normal scores above the FPR limit
    need sorting (found with ``np.partition``); the result equals the cumulative-sum curve of the
    MVTec evaluation code up to float rounding (the tests compare it with that cumulative-sum
    curve and with a brute-force threshold loop).
    """
    num_normal = normal.size
    # Rank of the first normal score whose FPR exceeds the limit, with one rank of margin for rounding.
    rank = min(num_normal, math.floor(fpr_limit * num_normal) + 2)
    cutoff = np.partition(normal, num_normal - rank)[num_normal - rank]
    top = np.sort(normal[normal >= cutoff])  # every normal score that can sit left of the limit
    keep = anom >= cutoff  # lower anomalous scores only appear right of the limit: area 0
    scores, w = anom[keep], weights[keep]
    fpr_above = (top.size - np.searchsorted(top, scores, side="right")) / num_normal  # a_j
    fpr_at = (top.size - np.searchsorted(top, scores, side="left")) / num_normal  # b_j
    area = np.zeros_like(fpr_above)
    full = fpr_at <= fpr_limit
    area[full] = (fpr_limit - fpr_at[full]) + 0.5 * (fpr_at[full] - fpr_above[full])
    part = (fpr_above < fpr_limit) & ~full
    area[part] = (fpr_limit - fpr_above[part]) ** 2 / (2.0 * (fpr_at[part] - fpr_above[part]))
    return float(np.dot(w, area) / fpr_limit)


def _aupro_compat(
    anom: np.ndarray,
    weights: np.ndarray,
    normal: np.ndarray,
    fpr_limit: float,
    num_thresholds: int,
    score_range: tuple[float, float],
) -> float:
    """The widespread ``compute_pro(masks, amaps, num_th=200)`` approximation, vectorised.

    That code (RD4AD, then copied by many UAD code bases) uses the thresholds
    ``np.arange(min, max, (max - min) / num_th)`` over all maps, predicts ``score > t``, computes
    FPR and PRO at each threshold, keeps the points with FPR strictly below the limit, divides
    their FPR by the largest kept FPR (not by the limit) and takes the trapezoid area. There is no
    (0, 0) point and no interpolation at the limit. Each pixel's number of thresholds below its
    score comes from one ``np.searchsorted`` on the threshold grid, so no full-size comparison is
    repeated per threshold.
    """
    lo, hi = score_range
    if not hi > lo:
        raise ValueError(f"aupro(mode='compat') needs non-constant maps, found all scores equal to {lo}")
    thresholds = np.arange(lo, hi, (hi - lo) / num_thresholds)  # same grid as the common code, in float64
    # per pixel: number of thresholds t with t < score, i.e. of thresholds where it is predicted anomalous
    hist_normal = np.bincount(np.searchsorted(thresholds, normal, side="left"), minlength=thresholds.size + 1)
    hist_pro = np.bincount(
        np.searchsorted(thresholds, anom, side="left"), weights=weights, minlength=thresholds.size + 1
    )
    # value at threshold k = sum over bins > k
    fpr = (normal.size - np.cumsum(hist_normal)[:-1]) / normal.size
    pro = hist_pro.sum() - np.cumsum(hist_pro)[:-1]
    kept = fpr < fpr_limit
    fpr, pro = fpr[kept], pro[kept]
    if fpr.size < 2 or fpr.max() <= 0.0:
        raise ValueError(
            f"aupro(mode='compat') is undefined here: {fpr.size} of the {thresholds.size} thresholds have "
            f"FPR < {fpr_limit} (at least 2 with a positive FPR are needed); the threshold grid is too "
            f"coarse for this limit, use mode='exact'"
        )
    # fpr is non-increasing along the thresholds: each segment adds (fpr_k - fpr_k+1) * mean height
    area = np.sum((fpr[:-1] - fpr[1:]) * 0.5 * (pro[:-1] + pro[1:]))
    return float(area / fpr.max())


def aupro(
    masks: ArrayLike,
    maps: ArrayLike,
    fpr_limit: float = 0.3,
    mode: Literal["exact", "compat"] = "exact",
    num_thresholds: int = COMPAT_NUM_THRESHOLDS,
) -> float:
    """Normalised area under the per-region-overlap curve (AUPRO) of one class, up to ``fpr_limit``.

    Regions are the 8-connected components of each image's ground-truth mask. FPR(t) is the
    fraction of normal pixels (mask == 0, over all images) scoring >= t; PRO(t) is the mean over
    all regions of all images of the fraction of the region's pixels scoring >= t.

    ``mode="exact"`` (the MVTec AD / MVTec 3D-AD evaluation definition): the curve has a point at
    every distinct score (tied scores merged) and starts at (0, 0); it is integrated with the
    trapezoid rule from FPR 0 to ``fpr_limit``, linearly interpolated at the limit, and divided by
    ``fpr_limit``. Vectorised: see :func:`_aupro_exact`.

    ``mode="compat"``: the ``num_thresholds``-threshold approximation of the common ``compute_pro``
    (see :func:`_aupro_compat`), for comparison with published numbers. Its FPR grid is coarse, so
    it is unreliable for small limits (it raises when fewer than 2 grid points fall below the limit).

    Args:
        masks: (N, H, W) ground truth, 1 = anomalous pixel.
        maps: (N, h, w) anomaly maps; bilinearly resized to (H, W) when the sizes differ.
        fpr_limit: upper FPR integration limit in (0, 1], e.g. 0.3 or 0.01.
        mode: ``"exact"`` or ``"compat"``.
        num_thresholds: number of thresholds of the compat mode (ignored in exact mode).

    Returns:
        The AUPRO in [0, 1].

    Raises:
        ValueError: wrong shapes / values, a bad ``fpr_limit`` / ``mode`` / ``num_thresholds``,
            no anomalous or no normal pixel (AUPRO is undefined), or an undefined compat curve.
    """
    if isinstance(fpr_limit, bool) or not isinstance(fpr_limit, numbers.Real) or not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit: expected a number in (0, 1], found {fpr_limit!r}")
    if mode not in ("exact", "compat"):
        raise ValueError(f"mode: expected 'exact' or 'compat', found {mode!r}")
    if mode == "compat" and (
        isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral) or num_thresholds < 2
    ):
        raise ValueError(f"num_thresholds: expected an int >= 2, found {num_thresholds!r}")
    mask_arr, map_arr = _pixel_inputs(masks, maps)
    anom = map_arr[mask_arr]  # (num_anomalous,)
    normal = map_arr[~mask_arr]  # (num_normal,)
    _need_both(anom.size, normal.size, "aupro", "anomalous pixels", "normal pixels")
    weights = _region_weights(mask_arr)
    if mode == "exact":
        return _aupro_exact(anom, weights, normal, float(fpr_limit))
    score_range = (float(map_arr.min()), float(map_arr.max()))
    return _aupro_compat(anom, weights, normal, float(fpr_limit), num_thresholds, score_range)


# ---------------------------------------------------------------------------------------- forgetting
def forgetting_measure(results: ArrayLike) -> float:
    """Forgetting measure FM of one metric over the incremental steps.

    ``results[i][j]`` is the score on class j after step i (NaN / None where class j was not yet
    learned or not evaluated). For every class j that has a value at the last step and at least
    one value before it, its forgetting is ``max_{i < last} R[i][j] - R[last][j]`` (NaNs ignored);
    FM is the mean over those classes. Negative values mean the class improved.

    Args:
        results: (steps, classes) matrix R.

    Returns:
        FM as a float, or NaN when no class qualifies (e.g. a single step).

    Raises:
        ValueError: ``results`` is not a non-empty 2-D matrix of numbers, or holds infinities.
    """
    try:
        matrix = np.asarray(results, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"forgetting_measure: expected a (steps, classes) matrix of numbers/None: {err}") from err
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"forgetting_measure: expected a non-empty (steps, classes) matrix, found shape {matrix.shape}"
        )
    if np.isinf(matrix).any():
        raise ValueError("forgetting_measure: expected finite values or NaN, found inf")
    earlier, last = matrix[:-1], matrix[-1]
    qualifies = ~np.isnan(last) & (~np.isnan(earlier)).any(axis=0)
    if not qualifies.any():
        return float("nan")
    best_earlier = np.nanmax(earlier[:, qualifies], axis=0)
    return float(np.mean(best_earlier - last[qualifies]))
