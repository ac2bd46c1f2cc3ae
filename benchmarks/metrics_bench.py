"""Speed and agreement of ``utils.metrics`` against straightforward reference implementations.

The references are written the obvious way: GT regions labelled per image with
``scipy.ndimage.label`` (8-connectivity) and a Python loop over thresholds that binarises every map
and measures FPR and the overlap of every region.

* exact reference: one threshold per distinct score (``>=``), curve from (0, 0), trapezoid rule
  with linear interpolation at the limit, divided by the limit. Evaluating every distinct score is
  what makes it exact; to keep it under a minute the maps are quantised to ``--levels`` values
  (both implementations see the same quantised maps, so the comparison stays exact) and it runs on
  the first ``--ref-maps`` maps only (the time ratio is measured on that same subset).
* compat reference: the common ``compute_pro`` recipe (200 thresholds ``np.arange(min, max, step)``,
  ``score > t``, keep FPR < limit, divide FPR by the largest kept FPR, trapezoid area).

Synthetic data: ``--maps`` masks of ``--size``² pixels, half of them with 1-4 elliptic blobs;
maps = mask + smoothed Gaussian noise. Prints one markdown table.

Usage: ``python benchmarks/metrics_bench.py [--maps 200] [--size 224] [--ref-maps 40] [--levels 1024]``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from sklearn.metrics import auc, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.metrics import aupro, image_auroc, pixel_auroc  # noqa: E402

LIMITS = (0.3, 0.01)
COMPAT_THRESHOLDS = 200


def make_data(num_maps: int, size: int, levels: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic masks (N, S, S) uint8, quantised maps (N, S, S) float32 and image labels (N,)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((num_maps, size, size), dtype=np.uint8)
    for i in range(0, num_maps, 2):
        for _ in range(rng.integers(1, 5)):
            center = tuple(int(c) for c in rng.integers(size // 8, size - size // 8, 2))
            axes = tuple(int(a) for a in rng.integers(2, max(3, size // 10), 2))
            cv2.ellipse(masks[i], center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    noise = rng.normal(0.0, 1.0, masks.shape).astype(np.float32)
    noise = np.stack([cv2.GaussianBlur(n, (0, 0), 2.0) for n in noise]) * 4.0
    maps = masks.astype(np.float32) + noise
    maps = (maps - maps.min()) / (maps.max() - maps.min())
    maps = (np.round(maps * (levels - 1)) / (levels - 1)).astype(np.float32)
    labels = (masks.reshape(num_maps, -1).max(axis=1) > 0).astype(np.int64)
    return masks, maps, labels


def label_regions(masks: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: (label image, region sizes) of the 8-connected GT regions."""
    out = []
    for mask in masks:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        out.append((labels, np.bincount(labels.ravel(), minlength=count + 1)[1:]))
    return out


def region_overlaps(predicted: np.ndarray, regions: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Fraction of every region (all images) covered by the binary prediction (N, S, S)."""
    parts = []
    for pred, (labels, sizes) in zip(predicted, regions):
        if sizes.size:
            hits = ndimage.sum_labels(pred, labels, index=np.arange(1, sizes.size + 1))
            parts.append(np.asarray(hits) / sizes)
    return np.concatenate(parts)


def reference_exact_curve(masks: np.ndarray, maps: np.ndarray, max_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at every distinct score, descending, from (0, 0) to the first point past ``max_limit``."""
    regions = label_regions(masks)
    normal = masks == 0
    num_normal = normal.sum()
    fprs, pros = [0.0], [0.0]
    for threshold in np.unique(maps)[::-1]:
        predicted = maps >= threshold
        fprs.append(np.logical_and(predicted, normal).sum() / num_normal)
        pros.append(region_overlaps(predicted, regions).mean())
        if fprs[-1] > max_limit:
            break
    return np.asarray(fprs), np.asarray(pros)


def integrate_to_limit(fprs: np.ndarray, pros: np.ndarray, limit: float) -> float:
    """Trapezoid area under the curve from 0 to ``limit`` (interpolated at the limit) / limit."""
    area = 0.0
    for k in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_limit) / 2
            break
    return area / limit


def reference_compat(masks: np.ndarray, maps: np.ndarray, limit: float) -> float:
    """The common 200-threshold ``compute_pro`` recipe, written as a plain loop."""
    regions = label_regions(masks)
    normal = masks == 0
    low, high = float(maps.min()), float(maps.max())
    fprs, pros = [], []
    for threshold in np.arange(low, high, (high - low) / COMPAT_THRESHOLDS):
        predicted = maps > threshold
        fprs.append(np.logical_and(predicted, normal).sum() / normal.sum())
        pros.append(region_overlaps(predicted, regions).mean())
    fprs, pros = np.asarray(fprs), np.asarray(pros)
    kept = fprs < limit
    if kept.sum() < 2:
        return float("nan")
    return float(auc(fprs[kept] / fprs[kept].max(), pros[kept]))


def best_time(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(value, best wall time in seconds over ``repeats`` runs)."""
    times, value = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return value, min(times)


def ours(masks: np.ndarray, maps: np.ndarray, limit: float, mode: str) -> float:
    """Our AUPRO, NaN where the compat curve is undefined (fewer than 2 grid points below the limit)."""
    try:
        return aupro(masks, maps, limit, mode=mode)
    except ValueError:
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maps", type=int, default=200, help="number of maps for the timing of our code")
    parser.add_argument("--size", type=int, default=224, help="map side in pixels")
    parser.add_argument("--ref-maps", type=int, default=40, help="maps used for the (slow) references")
    parser.add_argument("--levels", type=int, default=1024, help="quantisation levels of the maps")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats of our code (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    masks, maps, labels = make_data(args.maps, args.size, args.levels, args.seed)
    sub_masks, sub_maps = masks[: args.ref_maps], maps[: args.ref_maps]
    print(
        f"{args.maps} maps of {args.size}x{args.size} quantised to {args.levels} levels; references on the first "
        f"{len(sub_maps)} maps ({np.unique(sub_maps).size} distinct scores); anomalous pixels {masks.mean():.2%}\n"
    )
    rows = []
    start = time.perf_counter()
    curve = reference_exact_curve(sub_masks, sub_maps, max(LIMITS))
    ref_curve_time = time.perf_counter() - start
    for limit in LIMITS:
        ref_value = integrate_to_limit(*curve, limit)
        value, ours_time = best_time(lambda lim=limit: ours(sub_masks, sub_maps, lim, "exact"), args.repeats)
        _, full_time = best_time(lambda lim=limit: ours(masks, maps, lim, "exact"), args.repeats)
        rows.append(("aupro exact", limit, ours_time, ref_curve_time, full_time, value, ref_value))
    for limit in LIMITS:
        ref_value, ref_time = best_time(lambda lim=limit: reference_compat(sub_masks, sub_maps, lim), 1)
        value, ours_time = best_time(lambda lim=limit: ours(sub_masks, sub_maps, lim, "compat"), args.repeats)
        _, full_time = best_time(lambda lim=limit: ours(masks, maps, lim, "compat"), args.repeats)
        rows.append(("aupro compat", limit, ours_time, ref_time, full_time, value, ref_value))

    print(
        f"| metric | limit | ours, {len(sub_maps)} maps (s) | reference (s) | speed-up | ours, {args.maps} maps (s) "
        "| ours | reference | abs diff |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, limit, ours_time, ref_time, full_time, value, ref_value in rows:
        print(
            f"| {name} | {limit} | {ours_time:.3g} | {ref_time:.3g} | {ref_time / ours_time:.0f}x | {full_time:.3g} "
            f"| {value:.6f} | {ref_value:.6f} | {abs(value - ref_value):.1e} |"
        )

    scores = maps.reshape(len(maps), -1).max(axis=1)
    value, ours_time = best_time(lambda: image_auroc(labels, scores), args.repeats)
    ref_value, ref_time = best_time(lambda: roc_auc_score(labels, scores), args.repeats)
    print(
        f"| image_auroc vs sklearn ({args.maps} images) | - | - | {ref_time:.3g} | {ref_time / ours_time:.1f}x | "
        f"{ours_time:.3g} | {value:.6f} | {ref_value:.6f} | {abs(value - ref_value):.1e} |"
    )
    value, ours_time = best_time(lambda: pixel_auroc(masks, maps), args.repeats)
    ref_value, ref_time = best_time(lambda: roc_auc_score(masks.ravel(), maps.ravel()), 1)
    print(
        f"| pixel_auroc vs sklearn ({args.maps} maps) | - | - | {ref_time:.3g} | "
        f"{ref_time / ours_time:.1f}x | {ours_time:.3g} | {value:.6f} | {ref_value:.6f} | "
        f"{abs(value - ref_value):.1e} |"
    )
    print(
        "\nreference (s) of aupro exact = one threshold loop over the distinct scores, shared by both limits; "
        "compat NaN = fewer than 2 of the 200 thresholds below the limit (ours raises ValueError there)."
    )


if __name__ == "__main__":
    main()
