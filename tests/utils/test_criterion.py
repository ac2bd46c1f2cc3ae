import pytest
import torch

from utils.criterion_helper import DEFAULT_WEIGHTS, build_criterion
from utils.errors import ConfigError


def _outputs(with_cond=True, with_ib=True, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    outputs = {
        "feature": torch.randn(2, 4, 2, 2, generator=generator),
        "feature_rec": torch.randn(2, 4, 2, 2, generator=generator, requires_grad=True),
    }
    if with_cond:
        outputs["logits_rgb"] = torch.randn(2, classes, generator=generator, requires_grad=True)
        outputs["logits_depth"] = torch.randn(2, classes, generator=generator, requires_grad=True)
    if with_ib:  # a fusion module's own terms, as IB fusion returns them
        outputs["aux_losses"] = {"ib": torch.rand(1, generator=generator, requires_grad=True)[0]}
        outputs["class_logits"] = {"ib_ce": torch.randn(2, classes, generator=generator, requires_grad=True)}
    return outputs


BATCH = {"class_id": torch.tensor([0, 2])}


def test_criterion_total_is_weighted_sum_and_terms_follow_outputs():
    weights = {"rgb_ce": 0.5, "depth_ce": 2.0, "ib": 3.0, "fusion": 1.0}
    losses = build_criterion(weights)(_outputs(), BATCH)
    assert set(losses) == {"rgb_ce", "depth_ce", "ib", "fusion", "total"}
    expected = sum(weights[k] * losses[k] for k in weights)
    torch.testing.assert_close(losses["total"], expected)
    outputs = _outputs()
    torch.testing.assert_close(
        losses["fusion"], torch.nn.functional.mse_loss(outputs["feature_rec"], outputs["feature"])
    )
    torch.testing.assert_close(
        losses["rgb_ce"], torch.nn.functional.cross_entropy(outputs["logits_rgb"], BATCH["class_id"])
    )


@pytest.mark.parametrize(
    ("with_cond", "with_ib", "expected"),
    [
        (True, True, {"rgb_ce", "depth_ce", "ib", "fusion"}),
        (False, True, {"ib", "fusion"}),
        (True, False, {"rgb_ce", "depth_ce", "fusion"}),
        (False, False, {"fusion"}),
    ],
)
def test_criterion_only_applicable_terms(with_cond, with_ib, expected):
    losses = build_criterion({})(_outputs(with_cond, with_ib), BATCH)
    assert set(losses) == expected | {"total"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_criterion_optional_teacher_cross_entropy():
    assert DEFAULT_WEIGHTS["ib_ce"] == 0.0
    outputs = _outputs()
    losses = build_criterion({"ib_ce": 1.0})(outputs, BATCH)
    torch.testing.assert_close(
        losses["ib_ce"], torch.nn.functional.cross_entropy(outputs["class_logits"]["ib_ce"], BATCH["class_id"])
    )
    assert losses["ib"] is outputs["aux_losses"]["ib"]


def test_criterion_refuses_a_term_without_a_weight():
    outputs = _outputs()
    outputs["aux_losses"]["contrastive"] = torch.tensor(1.0)
    with pytest.raises(ValueError, match="loss term 'contrastive' that criterion.weights has no weight for"):
        build_criterion({})(outputs, BATCH)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({"fusoin": 1.0}, "unknown terms \\['fusoin'\\]"),
        ({"ib": -1.0}, "'ib' must be a number >= 0"),
        ({"ib": "one"}, "'ib' must be"),
        ({"ib": True}, "'ib' must be"),
    ],
)
def test_build_criterion_rejects_bad_weights(weights, match):
    with pytest.raises(ConfigError, match=match):
        build_criterion(weights)


def test_criterion_rejects_class_id_beyond_the_heads():
    with pytest.raises(ValueError, match="grow_classes"):
        build_criterion({})(_outputs(), {"class_id": torch.tensor([0, 3])})
