"""Fused map from per-modality maps standardised against normal training maps (``model.map_fusion: normal_zmax``)."""

import pytest
import torch

from models.map_fusion import NormalMapFusion
from models.model_helper import build_model
from utils.errors import ConfigError

STATS = {0: {"rgb": (1.0, 2.0), "depth": (3.0, 0.5)}, 1: {"rgb": (-1.0, 4.0), "depth": (0.0, 1.0)}}


def _maps(batch: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {m: torch.randn(batch, 1, 5, 6, generator=generator) * 3 for m in ("rgb", "depth")}


def _expected(maps, rows: list[dict[str, tuple[float, float]]]) -> torch.Tensor:
    per_sample = [
        torch.maximum(*[(maps[m][i] - rows[i][m][0]) / rows[i][m][1] for m in ("rgb", "depth")])
        for i in range(len(rows))
    ]
    return torch.stack(per_sample)


POOLED = {m: (sum(STATS[k][m][0] for k in STATS) / 2, sum(STATS[k][m][1] for k in STATS) / 2) for m in ("rgb", "depth")}
RAW = {"rgb": (0.0, 1.0), "depth": (0.0, 1.0)}


@pytest.mark.parametrize(
    ("fitted", "class_ids", "rows"),
    [
        ([], None, [RAW] * 3),  # before any fit: the max of the raw maps
        ([0, 1], torch.tensor([1, 0, 1]), [STATS[1], STATS[0], STATS[1]]),  # each image its class's statistics
        ([0, 1], None, [POOLED] * 3),  # no class given: pooled over the fitted classes
        ([0], torch.tensor([0, 2, 1]), [STATS[0], STATS[0], STATS[0]]),  # unfitted classes: pooled (= class 0 alone)
    ],
)
def test_fused_map_is_the_max_of_the_standardised_maps(fitted, class_ids, rows):
    fusion = NormalMapFusion(["rgb", "depth"], num_classes=3)
    for k in fitted:
        fusion.set_statistics(k, STATS[k])
    maps = _maps()
    torch.testing.assert_close(fusion(maps, class_ids), _expected(maps, rows))


def test_growing_keeps_the_fitted_classes_and_a_zero_std_is_refused():
    fusion = NormalMapFusion(["rgb", "depth"], num_classes=2)
    fusion.set_statistics(1, STATS[1])
    fusion.grow(4)
    assert fusion.mean.shape == (4, 2) and fusion.fitted.tolist() == [False, True, False, False]
    assert fusion.mean[1].tolist() == [-1.0, 0.0] and fusion.std[3].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="class 2, modality depth: the normal maps' std must be > 0"):
        fusion.set_statistics(2, {"rgb": (0.0, 1.0), "depth": (0.0, 0.0)})


def test_the_model_scores_its_fused_map(model_cfg, one_thread):
    cfg = {**model_cfg(), "map_fusion": "normal_zmax"}
    torch.manual_seed(0)
    model = build_model(cfg, 64, 2).eval()
    model.map_fusion.set_statistics(0, STATS[0])
    model.map_fusion.set_statistics(1, STATS[1])
    with torch.no_grad():
        out = model({"rgb": torch.randn(2, 3, 64, 64), "depth": torch.randn(2, 3, 64, 64)})
    maps = {m: out[f"anomaly_map_{m}"] for m in ("rgb", "depth")}
    # No class adapters, so no router: the pooled statistics.
    torch.testing.assert_close(out["anomaly_map"], _expected(maps, [POOLED, POOLED]))
    torch.testing.assert_close(out["image_score"], model.discriminator.image_score(out["anomaly_map"]))
    assert build_model(model_cfg(), 64, 2).map_fusion is None  # the default: the paper's L2 map


def test_unknown_map_fusion_is_refused(model_cfg):
    with pytest.raises(ConfigError, match="'model.map_fusion': expected one of concat_l2, normal_zmax, got 'mean'"):
        build_model({**model_cfg(), "map_fusion": "mean"}, 64, 2)
