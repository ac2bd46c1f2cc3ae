import math

import pytest
import torch

from utils.criterion_helper import DEFAULT_WEIGHTS, build_criterion, ib_loss
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
    if with_ib:
        outputs["ib_teacher"] = torch.randn(2, classes, generator=generator, requires_grad=True)
        outputs["ib_student"] = torch.randn(2, classes, generator=generator, requires_grad=True)
        outputs["ib_temperature"] = torch.tensor(2.0)
    return outputs


BATCH = {"class_id": torch.tensor([0, 2])}


def test_ib_loss_matches_hand_computed_value():
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    student = torch.tensor([[0.0, 1.0, 0.0], [1.0, -2.0, 0.0]])
    temperature = 2.0
    expected = 0.0
    for t_row, s_row in zip(teacher.tolist(), student.tolist()):
        p = [math.exp(v / temperature) for v in t_row]
        q = [math.exp(v / temperature) for v in s_row]
        p = [v / sum(p) for v in p]
        q = [v / sum(q) for v in q]
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    expected = expected / 2 * temperature**2
    assert ib_loss(teacher, student, temperature).item() == pytest.approx(expected, rel=1e-5)
    assert ib_loss(teacher, teacher.clone(), temperature).item() == pytest.approx(0.0, abs=1e-6)


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


def test_criterion_ib_gives_no_gradient_to_the_teacher():
    outputs = _outputs()
    build_criterion({"rgb_ce": 0, "depth_ce": 0, "fusion": 0})(outputs, BATCH)["total"].backward()
    assert outputs["ib_teacher"].grad is None
    assert outputs["ib_student"].grad.abs().sum() > 0


def test_criterion_optional_teacher_cross_entropy():
    assert DEFAULT_WEIGHTS["ib_ce"] == 0.0
    outputs = _outputs()
    losses = build_criterion({"ib_ce": 1.0})(outputs, BATCH)
    torch.testing.assert_close(
        losses["ib_ce"], torch.nn.functional.cross_entropy(outputs["ib_teacher"], BATCH["class_id"])
    )


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
