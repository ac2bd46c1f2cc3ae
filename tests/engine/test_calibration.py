"""Decision thresholds from held-out normal scores: statistics, the quantile rule, refusals."""

import numpy as np
import pytest

from engine.calibration import DEFAULT_QUANTILE, class_threshold, normal_map_statistics, normal_score_statistics


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
    ("scores", "quantile", "expected"),
    [
        ([0.1, 0.2, 0.3], 1.0, 0.3),
        ([0.1, 0.2, 0.3], 0.5, 0.2),
        ([0.1, 0.2, 0.3], 0.0, 0.1),
        ([0.0, 1.0], 0.25, 0.25),  # linear interpolation between order statistics
        ([5.0], DEFAULT_QUANTILE, 5.0),
    ],
)
def test_threshold_is_the_quantile_of_normal_scores(scores, quantile, expected):
    assert class_threshold({"scores": scores}, quantile) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("statistics", "quantile", "message"),
    [({"scores": [0.1]}, 1.5, "quantile must be in"), ({"scores": []}, 0.9, "no held-out normal score")],
)
def test_threshold_refusals(statistics, quantile, message):
    with pytest.raises(ValueError, match=message):
        class_threshold(statistics, quantile)


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
