import math

import pytest
import torch

from models.classifier import GrowingClassifier
from models.model_helper import build_model
from utils.criterion_helper import build_criterion

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(batch=2, size=64, seed=0):
    """``{"rgb": (B, 3, S, S), "depth": (B, 3, S, S)}`` random images."""
    generator = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, 3, size, size, generator=generator) for m in ("rgb", "depth")}


def _expected_keys(modalities, condition, fusion, training=True):
    keys = {"feature", "feature_rec"}
    if not training:  # anomaly maps and scores are evaluation outputs
        keys |= {"anomaly_map", "image_score"}
        keys |= {f"anomaly_map_{m}" for m in modalities} | {f"image_score_{m}" for m in modalities}
    if condition != "none":
        keys |= {f"logits_{m}" for m in modalities}
    if fusion == "ib":
        keys |= {"ib_teacher", "ib_student", "aux_losses", "class_logits"}
    return keys


def _check_training_step(model, outputs, num_classes):
    """Finite losses; gradients on every trainable parameter, none on the frozen backbone."""
    batch = outputs["feature"].shape[0]
    class_id = torch.arange(batch) % num_classes
    losses = build_criterion({"ib_ce": 1.0})(outputs, {"class_id": class_id})
    assert all(torch.isfinite(value) for value in losses.values()), losses
    losses["total"].backward()
    for name, parameter in model.named_parameters():
        if name.startswith("backbone."):
            assert not parameter.requires_grad and parameter.grad is None, name
        else:
            assert parameter.requires_grad, name
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, name
    return losses


def test_ib_iumad_default_model_at_224(model_cfg):
    model = build_model(model_cfg(default=True), image_size=224, num_classes=10).train()
    assert not model.backbone.training
    inputs = _inputs(size=224)
    outputs = model(inputs)
    assert outputs["feature"].shape == (2, 544, 14, 14)
    assert outputs["feature_rec"].shape == (2, 544, 14, 14)
    assert outputs["logits_rgb"].shape == outputs["ib_student"].shape == (2, 10)
    assert set(outputs) == _expected_keys(["rgb", "depth"], "mamba", "ib")
    losses = _check_training_step(model, outputs, 10)
    assert set(losses) == {"rgb_ce", "depth_ce", "ib", "ib_ce", "fusion", "total"}
    with torch.no_grad():
        evaluated = model.eval()(inputs)
    assert set(evaluated) == _expected_keys(["rgb", "depth"], "mamba", "ib", training=False)
    assert evaluated["anomaly_map"].shape == (2, 1, 224, 224)
    assert evaluated["image_score"].shape == (2,)


SWITCHES = [
    (modalities, condition, fusion)
    for modalities in (["rgb", "depth"], ["rgb"], ["depth"])
    for condition in ("mamba", "vit", "none")
    for fusion in ("ib", "sum")
]


@pytest.mark.parametrize(("modalities", "condition", "fusion"), SWITCHES)
def test_ib_iumad_switch_combinations_build_and_train(model_cfg, modalities, condition, fusion):
    torch.manual_seed(0)
    model = build_model(model_cfg(modalities, condition, fusion), image_size=64, num_classes=3).train()
    inputs = {m: x for m, x in _inputs().items() if m in modalities}
    outputs = model(inputs)
    channels = 448 * len(modalities)  # resnet18 levels 1-3: 64 + 128 + 256
    assert set(outputs) == _expected_keys(modalities, condition, fusion)
    assert outputs["feature_rec"].shape == outputs["feature"].shape == (2, channels, 4, 4)
    _check_training_step(model, outputs, 3)
    with torch.no_grad():
        evaluated = model.eval()(inputs)
    assert set(evaluated) == _expected_keys(modalities, condition, fusion, training=False)
    assert all(evaluated[f"anomaly_map_{m}"].shape == (2, 1, 64, 64) for m in modalities)


def test_ib_iumad_ignores_inputs_of_unused_modalities(model_cfg):
    torch.manual_seed(0)
    model = build_model(model_cfg(["rgb"], "vit", "ib"), image_size=64, num_classes=3).eval()
    inputs = _inputs()
    with torch.no_grad():
        alone = model({"rgb": inputs["rgb"]})
        with_depth = model(inputs)
    torch.testing.assert_close(alone, with_depth, rtol=0, atol=0)
    with pytest.raises(ValueError, match="modality 'rgb' but the inputs have \\['depth'\\]"):
        model({"depth": inputs["depth"]})
    with pytest.raises(ValueError, match="expected \\(B, 3, 64, 64\\)"):
        model({"rgb": torch.zeros(1, 3, 32, 32)})


def test_ib_iumad_scores_on_the_object_footprint(model_cfg):
    torch.manual_seed(0)
    cfg = model_cfg(["rgb", "depth"], "none", "sum")
    whole = build_model(cfg, image_size=64, num_classes=2).eval()
    on_object = build_model(cfg | {"score_region": "object"}, image_size=64, num_classes=2).eval()
    on_object.load_state_dict(whole.state_dict())
    inputs = _inputs()
    footprint = torch.zeros(2, 1, 64, 64)
    footprint[:, :, 16:48, 8:40] = 1.0
    with torch.no_grad():
        reference = whole(inputs)
        everywhere = on_object(inputs | {"foreground": torch.ones_like(footprint)})
        kept = on_object(inputs | {"foreground": footprint})
    torch.testing.assert_close(everywhere, reference)
    for suffix in ("", "_rgb", "_depth"):
        inside = reference[f"anomaly_map{suffix}"][:, :, 16:48, 8:40]
        torch.testing.assert_close(kept[f"anomaly_map{suffix}"][:, :, 16:48, 8:40], inside)
        assert (kept[f"image_score{suffix}"] <= reference[f"image_score{suffix}"]).all()
        assert (kept[f"image_score{suffix}"] <= inside.amax(dim=(1, 2, 3))).all()
    with pytest.raises(ValueError, match="score_region is 'object' but the inputs have no 'foreground'"):
        on_object(inputs)
    assert not any(k.startswith("anomaly_map") for k in on_object(inputs, maps=False))  # losses alone need none
    on_object.train()(inputs)  # training makes no maps: no footprint needed


def test_ib_iumad_backbone_stays_in_eval_mode_and_jitter_only_in_training(model_cfg):
    torch.manual_seed(0)
    model = build_model(model_cfg(condition="none", fusion="sum"), image_size=64, num_classes=2)
    model.train()
    assert model.training and model.reconstructions.training
    assert not any(module.training for module in model.backbone.modules())
    for entry in model_cfg()["net"]:
        if entry["name"] == "reconstruction":
            assert entry["kwargs"]["dropout"] > 0  # so the eval check below also covers dropout
    inputs = _inputs()
    with torch.no_grad():
        first, second = model(inputs), model(inputs)
        assert torch.equal(first["feature"], second["feature"])  # clean features: no jitter
        assert not torch.equal(first["feature_rec"], second["feature_rec"])  # jittered inputs
        model.eval()
        third, fourth = model(inputs), model(inputs)
        assert torch.equal(third["feature_rec"], fourth["feature_rec"])


@pytest.mark.parametrize("condition", ["mamba", "none"])
def test_ib_iumad_cached_features_path_equals_forward(model_cfg, condition):
    torch.manual_seed(0)
    model = build_model(model_cfg(condition=condition), image_size=64, num_classes=3).eval()
    inputs = _inputs()
    with torch.no_grad():
        direct = model(inputs)
        features = model.extract_features(inputs)
        cached = model.forward_from_features({k: v.clone() for k, v in features.items()}, inputs)
    assert set(features) == {"rgb", "depth"} and features["rgb"].shape == (2, 448, 4, 4)
    torch.testing.assert_close(direct, cached, rtol=0, atol=0)


def test_ib_iumad_grow_classes_keeps_old_rows_in_every_head(model_cfg):
    torch.manual_seed(0)
    model = build_model(model_cfg(), image_size=64, num_classes=3)
    heads = {name: module for name, module in model.named_modules() if isinstance(module, GrowingClassifier)}
    assert len(heads) == 3  # rgb and depth conditioner heads, the IB class head
    before = {name: (head.weight.detach().clone(), head.bias.detach().clone()) for name, head in heads.items()}
    model.grow_classes(5)
    assert model.num_classes == 5
    for name, head in heads.items():
        assert head.num_classes == 5
        assert torch.equal(head.weight[:3], before[name][0]) and torch.equal(head.bias[:3], before[name][1]), name
    outputs = model.eval()(_inputs())
    assert outputs["logits_depth"].shape == outputs["ib_teacher"].shape == (2, 5)
    model.grow_classes(5)  # no-op
    assert model.num_classes == 5
    with pytest.raises(ValueError, match="shrink"):
        model.grow_classes(4)


def _stripes(count, generator, size=64):
    """Normal images: vertical stripes with a random phase and a little noise."""
    columns = torch.arange(size, dtype=torch.float32).view(1, 1, size)
    phase = torch.rand(count, 1, 1, generator=generator) * 2 * math.pi
    stripes = (0.8 * torch.sin(columns / 3.0 + phase)).expand(count, size, size)
    return stripes.unsqueeze(1).repeat(1, 3, 1, 1) + 0.05 * torch.randn(count, 3, size, size, generator=generator)


def test_ib_iumad_anomaly_map_is_higher_on_an_altered_region_after_fitting(model_cfg):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    cfg = model_cfg(["rgb"], "none", "ib")
    for entry in cfg["net"]:
        if entry["name"] == "neck":
            entry["kwargs"]["out_stride"] = 8  # 8×8 tokens at 64 px
        if entry["name"] == "reconstruction":
            entry["kwargs"]["dropout"] = 0.0
        if entry["name"] == "discriminator":
            entry["kwargs"] = {"sigma": 1.0, "pool_size": 8}
    model = build_model(cfg, image_size=64, num_classes=1)
    train = _stripes(8, generator)
    test = _stripes(4, generator)
    test[:, :, 24:40, 24:40] = 2.0  # the altered square
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[24:40, 24:40] = True

    def contrast():
        model.eval()
        with torch.no_grad():
            anomaly_map = model({"rgb": test})["anomaly_map"][:, 0]
        return (anomaly_map[:, inside].mean() / anomaly_map[:, ~inside].mean()).item()

    untrained = contrast()
    features = model.extract_features({"rgb": train})  # the frozen part, cached
    criterion = build_criterion({})
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    for _ in range(80):
        losses = criterion(model.forward_from_features(features, {"rgb": train}), {"class_id": torch.zeros(8).long()})
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    fitted = contrast()
    assert losses["fusion"] < 0.01
    assert fitted > 1.5, f"inside/outside map ratio {fitted:.2f} (untrained {untrained:.2f})"
    assert fitted > untrained + 0.5


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ib_iumad_default_model_cuda_bf16(model_cfg):
    model = build_model(model_cfg(default=True), image_size=224, num_classes=10).cuda().train()
    inputs = {m: x.cuda() for m, x in _inputs(size=224).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        outputs = model(inputs)
        losses = build_criterion({"ib_ce": 1.0})(outputs, {"class_id": torch.arange(2, device="cuda")})
    losses["total"].backward()
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        evaluated = model.eval()(inputs)
    assert evaluated["anomaly_map"].shape == (2, 1, 224, 224) and torch.isfinite(evaluated["image_score"]).all()
