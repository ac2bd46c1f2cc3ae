"""Per-class adapters and the prototype router: zero start, growth, per-sample choice, isolation."""

import pytest
import torch

from models.class_adapters import ClassLowRankAdapter, PrototypeRouter, train_only_class_adapters
from models.reconstructions.transformer import ReconstructionTransformer


def test_adapter_starts_at_zero_and_growth_keeps_old_classes():
    torch.manual_seed(0)
    adapter = ClassLowRankAdapter(6, 5, rank=2, num_classes=2)
    x = torch.randn(3, 4, 6)
    assert torch.count_nonzero(adapter(x, torch.tensor([0, 1, 1]))) == 0
    with torch.no_grad():
        for up in adapter.up:
            up.normal_()
    before = [p.detach().clone() for p in (*adapter.down, *adapter.up)]
    adapter.grow(4)
    assert adapter.num_classes == 4
    kept = (*adapter.down[:2], *adapter.up[:2])
    assert all(torch.equal(old, new) for old, new in zip(before, kept))
    assert torch.count_nonzero(adapter.up[3]) == 0


def test_adapter_uses_each_samples_own_class():
    torch.manual_seed(1)
    adapter = ClassLowRankAdapter(6, 5, rank=3, num_classes=3)
    with torch.no_grad():
        for up in adapter.up:
            up.normal_()
    x, classes = torch.randn(3, 4, 6), torch.tensor([2, 0, 2])
    expected = torch.stack([x[b] @ (adapter.up[c] @ adapter.down[c]).T for b, c in enumerate(classes.tolist())])
    torch.testing.assert_close(adapter(x, classes), expected)


def test_router_picks_the_nearest_fitted_prototype():
    router = PrototypeRouter(channels=3, num_classes=2)
    with pytest.raises(RuntimeError, match="no fitted prototype"):
        router(torch.zeros(1, 3, 2, 2))
    router.set_prototype(0, torch.tensor([1.0, 0.0, 0.0]))
    router.grow(3)
    router.set_prototype(2, torch.tensor([0.0, 0.0, 1.0]))
    features = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.0, 2.0], [0.0, 1.0, 0.0]])[:, :, None, None].expand(-1, -1, 2, 2)
    assert router(features).tolist() == [0, 2, 0]  # class 1 has no prototype: never chosen


def test_adapters_start_as_the_shared_network_and_isolate_new_classes():
    kwargs = dict(in_channels=8, feature_size=(2, 2), hidden_dim=8, num_heads=2, num_encoder_layers=1,
                  num_decoder_layers=1, dim_feedforward=16, dropout=0.0)
    torch.manual_seed(0)
    plain = ReconstructionTransformer(**kwargs)
    torch.manual_seed(0)
    adapted = ReconstructionTransformer(**kwargs, class_adapter_rank=2, num_classes=2)
    feature = torch.randn(2, 8, 2, 2)
    torch.testing.assert_close(adapted(feature, None, torch.tensor([0, 1]))[0], plain(feature)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs the class of every input"):
        adapted(feature)
    trainable = train_only_class_adapters(adapted, [1])
    names = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert names and all(n.startswith("adapters.") and n.endswith(".1") for n in names)
    assert trainable == sum(p.numel() for p in adapted.parameters() if p.requires_grad)
