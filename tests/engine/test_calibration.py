"""Decision thresholds from held-out normal scores: statistics, the conformal rule, pooling, refusals."""

import numpy as np
import pytest

from engine.calibration import (
    conformal_threshold,
    decision_thresholds,
    normal_map_statistics,
    normal_score_statistics,
)


def _records(scores: dict[str, list[float]]) -> list[dict]:
    return [
        {"clsname": name, "label": 0, "score": s, "rgb.score": 2 * s, "depth.score": s + 1}
        for name, values in scores.items()
        for s in values
    ]


def test_statistics_per_class_sorted_with_modalities():
    stats = normal_score_statistics(_records({"b": [0.3, 0.1, 0.2], "a": [1.0]}))
    assert list(stats) == ["a", "b"]
    assert stats["b"]["scores"] == [0.1, 0.2, 0.3]
    assert stats["b"]["n"] == 3 and stats["b"]["max"] == 0.3
    assert stats["b"]["mean"] == pytest.approx(0.2)
    assert stats["b"]["std"] == pytest.approx(np.std([0.1, 0.2, 0.3]))
    assert stats["b"]["modalities"]["rgb"]["mean"] == pytest.approx(0.4)
    assert stats["b"]["modalities"]["depth"]["mean"] == pytest.approx(1.2)


@pytest.mark.parametrize(
    ("n", "quantile", "rank", "false_alarm"),
    [
        (9, 0.9, 9, 0.1),  # ⌈10·0.9⌉ = 9: the highest of 9 keeps exactly 10 %
        (29, 0.9, 27, 0.1),  # ⌈30·0.9⌉ = 27 (no float round-up to 28)
        (30, 0.95, 30, 1 / 31),
        (3, 0.99, 3, 0.25),  # too few for 1 %: the highest, and the 25 % it really keeps
        (4, 0.5, 3, 0.4),
        (5, 0.0, 1, 5 / 6),
    ],
)
def test_the_threshold_is_the_conformal_rank_and_says_its_rate(n, quantile, rank, false_alarm):
    scores = list(np.random.default_rng(n).permutation(np.arange(1.0, n + 1)))
    threshold = conformal_threshold(scores, quantile)
    assert (threshold.value, threshold.n) == (float(rank), n)
    assert threshold.false_alarm == pytest.approx(false_alarm)
    assert threshold.false_alarm <= max(1 - quantile, 1 / (n + 1))


def test_the_rate_holds_on_new_normals_like_the_held_out_ones():
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(400):
        threshold = conformal_threshold(rng.normal(size=19), 0.9)
        rates.append(np.mean(rng.normal(size=200) > threshold.value))
    assert np.mean(rates) == pytest.approx(0.1, abs=0.015)


def test_pooled_thresholds_share_the_scores_of_every_class():
    stats = {"a": {"scores": [1.0, 2.0]}, "b": {"scores": [3.0]}, "c": {"scores": [9.0]}}
    own = decision_thresholds(stats, ["a", "b"], 0.5, pooled=False)
    assert (own["a"].value, own["b"].value, own["a"].pooled) == (2.0, 3.0, False)
    pooled = decision_thresholds(stats, ["a", "b"], 0.5, pooled=True)
    assert pooled["a"] == pooled["b"] and (pooled["a"].value, pooled["a"].n, pooled["a"].pooled) == (2.0, 3, True)


@pytest.mark.parametrize(
    ("scores", "quantile", "message"),
    [([0.1], 1.5, "quantile must be in"), ([], 0.9, "no held-out normal score")],
)
def test_threshold_refusals(scores, quantile, message):
    with pytest.raises(ValueError, match=message):
        conformal_threshold(scores, quantile)


def test_defective_record_is_refused():
    records = _records({"a": [0.1]}) + [{"clsname": "a", "label": 1, "score": 0.9}]
    with pytest.raises(ValueError, match="normal images only"):
        normal_score_statistics(records)


def test_map_statistics_pool_every_pixel_of_a_classes_normal_maps():
    rng = np.random.default_rng(0)
    maps = {name: rng.normal(size=(n, 2, 4, 4)).astype(np.float16) for name, n in (("a", 3), ("b", 1))}
    records = [
        {"clsname": name, "label": 0, "map": m[0], "rgb.map": m[0], "depth.map": m[1]}
        for name, stack in maps.items()
        for m in stack
    ]
    stats = normal_map_statistics(records)
    assert list(stats) == ["a", "b"] and set(stats["a"]) == {"rgb", "depth"}  # the fused map is not standardised
    for name, stack in maps.items():
        for column, modality in enumerate(("rgb", "depth")):
            pixels = stack[:, column].astype(np.float64)
            assert stats[name][modality] == pytest.approx((pixels.mean(), pixels.std()))


def test_map_statistics_on_the_object_count_only_its_pixels():
    region = np.zeros((4, 4), bool)
    region[1:3, :] = True
    inside = np.arange(8, dtype=np.float64).reshape(2, 4)
    depth = np.full((4, 4), -5.0, dtype=np.float16)  # the map's minimum off the object
    depth[1:3] = inside
    record = {"clsname": "a", "label": 0, "map": depth, "rgb.map": depth, "depth.map": depth, "region": region}
    assert normal_map_statistics([record])["a"]["depth"] == pytest.approx((inside.mean(), inside.std()))
