"""Tests of utils/metrics.py: hand-computed cases and independent slow references."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import auc, roc_auc_score

from utils.metrics import aupro, forgetting_measure, image_auroc, pixel_auroc


# ----------------------------------------------------------------------------- independent references
def _regions(masks):
    """Per image: (label image, sizes) of the 8-connected GT regions (one scipy call per image)."""
    out = []
    for mask in masks:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        out.append((labels, [int((labels == k).sum()) for k in range(1, count + 1)]))
    return out


def _overlaps(predicted, regions):
    """Fraction of every region (all images) covered by the binary prediction."""
    return [
        predicted[i][labels == k + 1].sum() / size
        for i, (labels, sizes) in enumerate(regions)
        for k, size in enumerate(sizes)
    ]


def _reference_aupro(masks, maps, limit):
    """Brute force: one threshold per distinct score, region overlaps by plain loops."""
    regions = _regions(masks)
    normal = masks == 0
    fprs, pros = [0.0], [0.0]
    for threshold in sorted(set(maps.ravel().tolist()), reverse=True):
        predicted = maps >= threshold
        fprs.append((predicted & normal).sum() / normal.sum())
        pros.append(float(np.mean(_overlaps(predicted, regions))))
    area = 0.0
    for k in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_at_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_at_limit) / 2
            break
    return area / limit


def _reference_cumsum_aupro(masks, maps, limit):
    """The MVTec recipe: sort all scores once, cumulative sums, last index of each tie group, (0, 0) first."""
    regions = _regions(masks)
    weight = np.zeros(maps.shape)
    num_regions = sum(len(sizes) for _, sizes in regions)
    for i, (labels, sizes) in enumerate(regions):
        for k, size in enumerate(sizes):
            weight[i][labels == k + 1] = 1.0 / (num_regions * size)
    order = np.argsort(-maps.ravel(), kind="stable")
    scores = maps.ravel()[order]
    normal = (masks.ravel() == 0)[order]
    last_of_tie = np.append(np.diff(scores) != 0, True)
    fprs = np.append(0.0, (np.cumsum(normal) / normal.sum())[last_of_tie])
    pros = np.append(0.0, np.cumsum(weight.ravel()[order])[last_of_tie])
    inside = np.searchsorted(fprs, limit, side="right")  # points with FPR <= limit
    area = np.trapezoid(pros[:inside], fprs[:inside])
    if inside < len(fprs):
        x0, x1, y0, y1 = fprs[inside - 1], fprs[inside], pros[inside - 1], pros[inside]
        area += (limit - x0) * (y0 + y0 + (y1 - y0) * (limit - x0) / (x1 - x0)) / 2
    return area / limit


def _reference_compat(masks, maps, limit, num_th=200):
    """The common compute_pro recipe as a loop: score > t on np.arange thresholds, FPR / max kept FPR."""
    regions = _regions(masks)
    normal = masks == 0
    lo, hi = float(maps.min()), float(maps.max())
    fprs, pros = [], []
    for threshold in np.arange(lo, hi, (hi - lo) / num_th):
        predicted = maps > threshold
        fprs.append((predicted & normal).sum() / normal.sum())
        pros.append(np.mean(_overlaps(predicted, regions)))
    fprs, pros = np.array(fprs), np.array(pros)
    kept = fprs < limit
    return auc(fprs[kept] / fprs[kept].max(), pros[kept])


def _random_case(seed, levels):
    """Small masks (N, H, W) with a few regions and maps with ties (levels > 0) or continuous (levels 0)."""
    rng = np.random.default_rng(seed)
    n, h, w = int(rng.integers(1, 4)), int(rng.integers(3, 9)), int(rng.integers(3, 9))
    masks = (rng.random((n, h, w)) < rng.uniform(0.1, 0.5)).astype(np.uint8)
    masks[0, 0, 0], masks[-1, -1, -1] = 1, 0  # both kinds of pixel present
    if levels:
        maps = rng.integers(0, levels, (n, h, w)).astype(np.float64) + masks * rng.integers(0, 3)
    else:
        maps = rng.normal(size=(n, h, w)) + masks
    return masks, maps


def _blob_case(num_maps=8, size=64, seed=0):
    """Masks with 1-3 square blobs in half of the images; maps = mask + noise."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((num_maps, size, size), dtype=np.uint8)
    for i in range(0, num_maps, 2):
        for _ in range(rng.integers(1, 4)):
            y, x, r = (int(v) for v in rng.integers(4, size - 12, 3))
            masks[i, y : y + 4 + r % 8, x : x + 4 + r % 8] = 1
    return masks, masks + rng.normal(0.0, 0.6, masks.shape)


# ----------------------------------------------------------------------------------- AUPRO: hand cases
# One 4x4 image, region = the 2x2 block top-left (pixels scored 0.9, 0.8, 0.4, 0.2), 12 normal pixels
# scored 0.85, 0.6, 0.3 and nine times 0.0. Curve (FPR, PRO), scores descending:
#   (0,0) -0.9-> (0,1/4) -0.85-> (1/12,1/4) -0.8-> (1/12,1/2) -0.6-> (2/12,1/2) -0.4-> (2/12,3/4)
#   -0.3-> (3/12,3/4) -0.2-> (3/12,1) -0.0-> (1,1)
# limit 0.3: area = 1/4*1/12 + 1/2*1/12 + 3/4*1/12 + 1*(0.3-3/12) = 0.125 + 0.05 = 0.175 -> 0.175/0.3 = 7/12
# limit 0.1: area = 1/4*1/12 + 1/2*(0.1-1/12) = 1/48 + 1/120 = 7/240  -> /0.1 = 7/24
# limit 1.0: area = 1.5/12 + 1*(1-3/12) = 0.875
_HAND_MASK = np.array([[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])
_HAND_MAP = np.array([[[0.9, 0.8, 0.85, 0.6], [0.4, 0.2, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])

# Tie between an anomalous and a normal pixel: one 1x4 image, mask [1, 1, 0, 0], scores [1, .5, .5, 0].
#   (0,0) -1-> (0,1/2) -0.5 (both)-> (1/2,1) -0-> (1,1): PRO = 1/2 + x on [0, 1/2] (a sloped segment)
# limit 0.3: area = 0.5*0.3 + 0.3^2/2 = 0.195 -> 0.65 (the limit is interpolated on the slope; not merging
#   the tie gives 0.5 or 1.0, interpolating with the wrong neighbour or truncating gives other values)
# limit 0.5: area = 0.25 + 0.125 = 0.375 -> 0.75 ; limit 1: 0.375 + 0.5 = 0.875
_TIE_MASK = np.array([[[1, 1, 0, 0]]])
_TIE_MAP = np.array([[[1.0, 0.5, 0.5, 0.0]]])


@pytest.mark.parametrize(
    ("masks", "maps", "limit", "expected"),
    [
        (_HAND_MASK, _HAND_MAP, 0.3, 7 / 12),
        (_HAND_MASK, _HAND_MAP, 0.1, 7 / 24),
        (_HAND_MASK, _HAND_MAP, 1.0, 0.875),
        (_TIE_MASK, _TIE_MAP, 0.3, 0.65),
        (_TIE_MASK, _TIE_MAP, 0.5, 0.75),
        (_TIE_MASK, _TIE_MAP, 1.0, 0.875),
    ],
)
def test_aupro_hand_computed(masks, maps, limit, expected):
    assert aupro(masks, maps, limit) == pytest.approx(expected, abs=1e-12)
    assert _reference_aupro(masks, maps, limit) == pytest.approx(expected, abs=1e-12)
    assert _reference_cumsum_aupro(masks, maps, limit) == pytest.approx(expected, abs=1e-12)


def test_aupro_diagonal_pixels_form_one_region():
    # region = (0,0) + (1,1) + (1,2): (0,0) touches (1,1) only diagonally. Six normal pixels at 0.5.
    # One region of 3 pixels: PRO is 1/3 from score 1.0 to FPR 1, then 1 -> AUPRO@1 = 1/3.
    # (4-connectivity would give regions {(0,0)}, {(1,1),(1,2)}: PRO 1/2 -> 1/2.)
    mask = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]]])
    amap = np.where(mask == 1, 0.0, 0.5)
    amap[0, 0, 0] = 1.0
    assert aupro(mask, amap, 1.0) == pytest.approx(1 / 3, abs=1e-12)


def test_aupro_regions_do_not_connect_across_images():
    # image 0: region {(0,0)} scored 1; image 1: region {(0,0),(0,1),(1,0)} scored 0; normals 0.5.
    # Two regions: PRO = 1/2 until FPR 1 -> 1/2 (one merged region of 4 pixels would give 1/4).
    masks = np.array([[[1, 0], [0, 0]], [[1, 1], [1, 0]]])
    maps = np.array([[[1.0, 0.5], [0.5, 0.5]], [[0.0, 0.0], [0.0, 0.5]]])
    assert aupro(masks, maps, 1.0) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("limit", [0.01, 0.3, 1.0])
def test_aupro_perfect_separation_is_one(limit):
    masks, _ = _blob_case(num_maps=4, size=32)
    maps = masks + np.random.default_rng(0).random(masks.shape) * 0.5
    assert aupro(masks, maps, limit) == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------- AUPRO vs references
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("levels", [0, 3, 8])
def test_aupro_exact_matches_brute_force_reference(seed, levels):
    masks, maps = _random_case(seed, levels)
    for limit in (0.01, 0.05, 0.3, 0.77, 1.0):
        expected = _reference_aupro(masks, maps, limit)
        assert abs(aupro(masks, maps, limit) - expected) < 1e-9, (seed, levels, limit)
        assert abs(_reference_cumsum_aupro(masks, maps, limit) - expected) < 1e-9, (seed, levels, limit)


@pytest.mark.parametrize("limit", [0.3, 0.05])
@pytest.mark.parametrize("on_grid", [False, True])
def test_aupro_compat_matches_loop_reference(limit, on_grid):
    masks, maps = _blob_case(num_maps=6, size=48)
    if on_grid:  # integer scores 0..200: the thresholds are 0, 1, ..., 199 and many scores equal one of them
        maps = np.round((maps - maps.min()) / (maps.max() - maps.min()) * 200)
    assert aupro(masks, maps, limit, mode="compat") == pytest.approx(_reference_compat(masks, maps, limit), abs=1e-9)


def test_aupro_compat_hand_computed_keeps_fpr_strictly_below_limit():
    # region = pixels 0-1 (scores 1.0, 0.7), normals 0.0, 0.0, 0.6, 0.8; thresholds 0, 0.005, ..., 0.995, "> t".
    #   t < 0.6: FPR 1/2, PRO 1 | 0.6 <= t < 0.7: FPR 1/4, PRO 1 | 0.7 <= t < 0.8: FPR 1/4, PRO 1/2 | t >= 0.8: 0, 1/2
    # limit 1/2 keeps FPR < 1/2 only: x = FPR / (1/4) in {1, 0}; area of (1, 1/2) -> (0, 1/2) = 0.5
    # (keeping FPR <= 1/2 would add (1, 1) -> (1/2, 1) and give 0.75)
    masks = np.array([[[1, 1, 0, 0, 0, 0]]])
    maps = np.array([[[1.0, 0.7, 0.0, 0.0, 0.6, 0.8]]])
    assert aupro(masks, maps, 0.5, mode="compat") == pytest.approx(0.5, abs=1e-12)
    assert _reference_compat(masks, maps, 0.5) == pytest.approx(0.5, abs=1e-12)


def test_aupro_compat_close_to_exact_at_0_3():
    masks, maps = _blob_case()
    exact = aupro(masks, maps, 0.3)
    compat = aupro(masks, maps, 0.3, mode="compat")
    assert 0.3 < exact < 0.99
    assert abs(exact - compat) < 0.02, (exact, compat)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_aupro_same_for_every_input_dtype(dtype):
    masks, maps = _random_case(3, levels=6)
    assert aupro(masks.astype(bool), maps.astype(dtype), 0.3) == pytest.approx(_reference_aupro(masks, maps, 0.3))


# --------------------------------------------------------------------------------- resizing of maps
def test_maps_smaller_than_masks_are_resized_bilinearly():
    masks, maps = _blob_case(num_maps=4, size=32)
    small = maps[:, ::2, ::2].astype(np.float32)  # (4, 16, 16)
    # independent bilinear upsampling (half-pixel centres, like cv2.INTER_LINEAR)
    big = torch.nn.functional.interpolate(torch.from_numpy(small)[:, None], size=(32, 32), mode="bilinear")
    big = big[:, 0].numpy()
    assert aupro(masks, small, 0.3) == pytest.approx(aupro(masks, big, 0.3), abs=1e-6)
    assert pixel_auroc(masks, small) == pytest.approx(pixel_auroc(masks, big), abs=1e-6)
    assert aupro(masks, small, 0.3) != pytest.approx(aupro(masks, maps, 0.3), abs=1e-6)


# ------------------------------------------------------------------------------------------- AUROC
@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),  # 3 of the 4 (anomalous, good) pairs ordered right
        ([0, 1], [0.5, 0.5], 0.5),  # a tie counts one half
        ([1, 0, 0], [0.9, 0.9, 0.1], 0.75),
        ([True, False], [0.0, 1.0], 0.0),
    ],
)
def test_image_auroc_hand_computed(labels, scores, expected):
    assert image_auroc(np.array(labels), np.array(scores)) == pytest.approx(expected)


@pytest.mark.parametrize("positive_rate", [0.2, 0.8])  # both branches: fewer or more positives than negatives
def test_aurocs_match_sklearn_with_ties(positive_rate):
    rng = np.random.default_rng(1)
    labels = (rng.random(300) < positive_rate).astype(int)
    scores = rng.integers(0, 20, 300) + labels * 3.0
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    masks, maps = labels.reshape(3, 10, 10), scores.reshape(3, 10, 10)
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


# ------------------------------------------------------------------------------------- input checks
_GOOD_MASKS, _GOOD_MAPS = _random_case(0, levels=0)


@pytest.mark.parametrize(
    ("masks", "maps", "kwargs", "match"),
    [
        (_GOOD_MASKS[0], _GOOD_MAPS, {}, r"masks \(N, H, W\): expected a 3-D array, found shape"),
        (_GOOD_MASKS, _GOOD_MAPS[:, None], {}, r"maps \(N, h, w\): expected a 3-D array, found shape"),
        (np.concatenate([_GOOD_MASKS, _GOOD_MASKS]), _GOOD_MAPS, {}, "same number of images"),
        (_GOOD_MASKS * 2, _GOOD_MAPS, {}, "expected only 0 and 1"),
        (_GOOD_MASKS, np.where(_GOOD_MASKS, np.nan, _GOOD_MAPS), {}, "expected finite values"),
        (np.zeros_like(_GOOD_MASKS), _GOOD_MAPS, {}, "needs both anomalous pixels and normal pixels, found 0"),
        (np.ones_like(_GOOD_MASKS), _GOOD_MAPS, {}, "needs both anomalous pixels and normal pixels"),
        (_GOOD_MASKS, _GOOD_MAPS, {"fpr_limit": 0.0}, r"fpr_limit: expected a number in \(0, 1\]"),
        (_GOOD_MASKS, _GOOD_MAPS, {"fpr_limit": 1.5}, r"fpr_limit: expected a number in \(0, 1\]"),
        (_GOOD_MASKS, _GOOD_MAPS, {"mode": "fast"}, "mode: expected 'exact' or 'compat', found 'fast'"),
        (_GOOD_MASKS, _GOOD_MAPS, {"mode": "compat", "num_thresholds": 1}, "num_thresholds: expected an int"),
        (_GOOD_MASKS, np.ones_like(_GOOD_MAPS), {"mode": "compat"}, "needs non-constant maps"),
    ],
)
def test_aupro_rejects_bad_input(masks, maps, kwargs, match):
    with pytest.raises(ValueError, match=match):
        aupro(masks, maps, **kwargs)


def test_aupro_compat_raises_when_grid_too_coarse_for_limit():
    masks = np.array([[[1, 0, 0, 0]]])
    maps = np.array([[[1.0, 0.0, 0.5, 0.9]]])  # every threshold below 0.5 gives FPR >= 1/3
    with pytest.raises(ValueError, match="too coarse for this limit, use mode='exact'"):
        aupro(masks, maps, 0.01, mode="compat")


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "needs both anomalous images and good images, found 0 anomalous"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "expected only 0 and 1"),
        ([0, 1], [0.1, 0.2, 0.3], "same shape"),
        ([[0, 1]], [[0.1, 0.2]], r"expected a 1-D array, found shape \(1, 2\)"),
        ([0, 1], ["a", "b"], "expected real numbers"),
    ],
)
def test_image_auroc_rejects_bad_input(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        image_auroc(np.array(labels), np.array(scores))


def test_pixel_auroc_rejects_mask_without_anomaly():
    with pytest.raises(ValueError, match="pixel_auroc needs both anomalous pixels and normal pixels"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))


# ------------------------------------------------------------------------------------------ forgetting
_NAN = float("nan")


@pytest.mark.parametrize(
    ("matrix", "expected"),
    [
        ([[0.9, _NAN], [0.8, 0.7]], 0.1),  # class 1 is new at the last step: not counted
        ([[0.5], [0.7]], -0.2),  # improvement gives negative forgetting
        # class 0: max(0.9, 0.7) - 0.6 = 0.3; class 1: 0.8 - 0.85 = -0.05; class 2 new -> mean 0.125
        ([[0.9, _NAN, _NAN], [0.7, 0.8, _NAN], [0.6, 0.85, 0.9]], 0.125),
        ([[0.9, 0.8], [_NAN, 0.7]], 0.1),  # class 0 missing at the last step: not counted
        ([[0.9], [_NAN], [0.8]], 0.1),  # a gap in the middle is ignored
        ([[0.9, None], [0.8, 0.7]], 0.1),  # None works as NaN (as read from results.json)
        ([[0.9, 0.8]], _NAN),  # a single step: undefined
        ([[_NAN, 0.8], [_NAN, 0.7]], 0.1),
        ([[_NAN], [0.7]], _NAN),  # never learned before the last step
    ],
)
def test_forgetting_measure_hand_computed(matrix, expected):
    value = forgetting_measure(matrix)
    assert isinstance(value, float)
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("matrix", "match"),
    [
        ([0.9, 0.8], r"expected a non-empty \(steps, classes\) matrix, found shape \(2,\)"),
        (np.zeros((0, 3)), r"found shape \(0, 3\)"),
        ([[0.9, float("inf")]], "found inf"),
        ([["a", 0.1]], "matrix of numbers"),
    ],
)
def test_forgetting_measure_rejects_bad_input(matrix, match):
    with pytest.raises(ValueError, match=match):
        forgetting_measure(matrix)
