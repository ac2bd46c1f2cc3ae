import math

import pytest
import torch

from models.classifier import GrowingClassifier
from models.fusion.ib_fusion import IBFusion, ib_loss
from models.fusion.sum_fusion import SumFusion

pytestmark = pytest.mark.usefixtures("one_thread")


def _recons(channels=(6, 6), batch=2, size=(3, 3), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, *size, generator=generator) for c in channels]


@pytest.mark.parametrize("channels", [(6, 6), (6,)])
def test_ib_fusion_outputs_and_shapes(channels):
    torch.manual_seed(0)
    fusion = IBFusion(list(channels), num_classes=3, hidden_dim=8, num_heads=2, z_dim=4, temperature=2.0)
    out = fusion(_recons(channels))
    assert out["feature_rec"].shape == (2, sum(channels), 3, 3)
    assert out["ib_teacher"].shape == (2, 3) and out["ib_student"].shape == (2, 3)
    torch.testing.assert_close(out["aux_losses"]["ib"], ib_loss(out["ib_teacher"], out["ib_student"], 2.0))
    assert out["class_logits"]["ib_ce"] is out["ib_teacher"]
    assert isinstance(fusion.head, GrowingClassifier)


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


def test_ib_loss_gives_no_gradient_to_the_teacher():
    teacher, student = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    ib_loss(teacher, student, 2.0).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_ib_fusion_starts_close_to_the_concatenated_reconstructions():
    torch.manual_seed(0)
    fusion = IBFusion([6, 6], num_classes=3, hidden_dim=8, num_heads=2, z_dim=4)
    recons = _recons()
    out = fusion(recons)
    torch.testing.assert_close(out["feature_rec"], torch.cat(recons, dim=1), atol=0.05, rtol=0)
    no_residual = IBFusion([6, 6], num_classes=3, hidden_dim=8, num_heads=2, z_dim=4, residual=False)
    assert no_residual(recons)["feature_rec"].shape == (2, 12, 3, 3)


def test_ib_fusion_mixes_modalities_through_cross_attention():
    torch.manual_seed(0)
    fusion = IBFusion([6, 6], num_classes=3, hidden_dim=8, num_heads=2, z_dim=4)
    with torch.no_grad():
        fusion.decoder[-1].weight.normal_()  # make the bottleneck's correction visible
    rgb, depth = _recons()
    first = fusion([rgb, depth])["feature_rec"][:, :6]
    second = fusion([rgb, depth + 1.0])["feature_rec"][:, :6]
    assert (first - second).abs().max() > 1e-3  # the RGB channels of F^g depend on the depth input


def test_ib_fusion_gradients_reach_every_parameter():
    torch.manual_seed(0)
    fusion = IBFusion([6, 6], num_classes=3, hidden_dim=8, num_heads=2, z_dim=4)
    recons = [r.requires_grad_() for r in _recons()]
    out = fusion(recons)
    target = torch.cat([r.detach() for r in recons], dim=1) + 0.1
    loss = (out["feature_rec"] - target).square().mean() + out["aux_losses"]["ib"]
    loss = loss + torch.nn.functional.cross_entropy(out["ib_teacher"], torch.tensor([0, 2]))
    loss.backward()
    for name, parameter in fusion.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert all(r.grad.abs().sum() > 0 for r in recons)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(in_channels=[4, 4, 4]), "one or two"), (dict(num_heads=3), "divisible"), (dict(temperature=0.0), "> 0")],
)
def test_ib_fusion_rejects_bad_arguments(kwargs, match):
    arguments = dict(in_channels=[4, 4], num_classes=2, hidden_dim=8, num_heads=2, z_dim=4)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        IBFusion(**arguments)


def test_sum_fusion_concatenates_reconstructions():
    fusion = SumFusion([6, 4], num_classes=3)
    recons = _recons((6, 4))
    out = fusion(recons)
    assert list(out) == ["feature_rec"]
    assert torch.equal(out["feature_rec"], torch.cat(recons, dim=1))
    assert fusion.out_channels == 10
    assert not list(fusion.parameters())
    with pytest.raises(ValueError, match="channels"):
        fusion(_recons((6, 6)))
