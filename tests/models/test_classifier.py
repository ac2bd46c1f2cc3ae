"""GrowingClassifier: forward shape, growth keeps old rows bit-identical, no shrinking."""

import pytest
import torch

from models.classifier import GrowingClassifier


def test_growing_classifier_forward_shape_and_linear():
    torch.manual_seed(0)
    head = GrowingClassifier(8, 3)
    x = torch.randn(5, 8)
    logits = head(x)
    assert logits.shape == (5, 3) and head.num_classes == 3
    torch.testing.assert_close(logits, x @ head.weight.t() + head.bias)


@pytest.mark.parametrize(("start", "steps"), [(6, [10]), (1, [2, 3, 7]), (9, [9, 10])])
def test_growing_classifier_grow_keeps_old_rows_bit_identical(start, steps):
    torch.manual_seed(0)
    head = GrowingClassifier(16, start)
    x = torch.randn(4, 16)
    for new in steps:
        old_weight, old_bias = head.weight.detach().clone(), head.bias.detach().clone()
        old_logits = head(x).detach()
        old = head.num_classes
        head.grow(new)
        assert head.num_classes == new
        assert head.weight.shape == (new, 16) and head.bias.shape == (new,)
        assert torch.equal(head.weight[:old], old_weight) and torch.equal(head.bias[:old], old_bias)
        torch.testing.assert_close(head(x)[:, :old], old_logits)  # GEMM blocking may change the last bit
        if new > old:
            assert head.weight[old:].abs().sum() > 0  # new rows initialised, not left at zero
            assert head.weight[old:].abs().max() <= 16**-0.5
        assert head.weight.requires_grad and head.bias.requires_grad


def test_growing_classifier_new_rows_get_gradients_and_keep_dtype():
    head = GrowingClassifier(4, 2).double()
    head.grow(5)
    assert head.weight.dtype == torch.float64 and head.bias.dtype == torch.float64
    head(torch.randn(3, 4, dtype=torch.float64)).sum().backward()
    assert head.weight.grad.shape == (5, 4) and head.weight.grad[2:].abs().sum() > 0


def test_growing_classifier_keeps_frozen_state():
    head = GrowingClassifier(4, 2)
    head.requires_grad_(False)
    head.grow(3)
    assert not head.weight.requires_grad and not head.bias.requires_grad


def test_growing_classifier_cannot_shrink():
    head = GrowingClassifier(4, 5)
    with pytest.raises(ValueError, match="cannot shrink.*5 classes.*3"):
        head.grow(3)
    assert head.num_classes == 5


@pytest.mark.parametrize(("in_features", "num_classes"), [(0, 3), (4, 0)])
def test_growing_classifier_rejects_empty_sizes(in_features, num_classes):
    with pytest.raises(ValueError):
        GrowingClassifier(in_features, num_classes)
