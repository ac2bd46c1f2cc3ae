import copy

import pytest
import torch

from models.conditioners import ViTConditioner
from models.fusion.ib_fusion import IBFusion
from models.fusion.sum_fusion import SumFusion
from models.mamba import MambaDecoder
from models.model_helper import REGISTRY, build_model
from utils.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def _entry(cfg, name):
    return next(entry for entry in cfg["net"] if entry["name"] == name)


@pytest.mark.parametrize(("condition", "fusion"), [("mamba", "ib"), ("vit", "sum"), ("none", "ib")])
def test_build_model_does_not_mutate_the_config(model_cfg, condition, fusion):
    cfg = model_cfg(condition=condition, fusion=fusion)
    snapshot = copy.deepcopy(cfg)
    build_model(cfg, image_size=64, num_classes=3)
    assert cfg == snapshot


def test_build_model_wires_shapes_between_entries(model_cfg):
    model = build_model(model_cfg(), image_size=64, num_classes=3)
    assert model.neck.in_channels == model.backbone.channels == [64, 128, 256]
    assert model.neck.in_strides == [4, 8, 16]
    recon = model.reconstructions["depth"]
    assert (recon.in_channels, recon.feature_size, recon.hidden_dim) == (448, (4, 4), 32)
    assert isinstance(model.conditioner, MambaDecoder)
    assert model.conditioner.patch_size == 16 and model.conditioner.cond_dim == 32
    assert model.conditioner.num_cond_layers == 2 and model.conditioner.modalities == ("rgb", "depth")
    assert isinstance(model.fusion, IBFusion) and model.fusion.in_channels == [448, 448]
    assert model.channel_splits == {"rgb": (0, 448), "depth": (448, 896)}
    assert model.num_classes == 3
    assert model.reconstructions["rgb"] is not model.reconstructions["depth"]


@pytest.mark.parametrize(
    ("condition", "fusion", "conditioner_cls", "fusion_cls"),
    [("vit", "sum", ViTConditioner, SumFusion), ("none", "ib", type(None), IBFusion)],
)
def test_build_model_switches_select_entries(model_cfg, condition, fusion, conditioner_cls, fusion_cls):
    cfg = model_cfg(condition=condition, fusion=fusion)
    _entry(cfg, "mamba")["kwargs"]["not_a_kwarg"] = 1  # entries not selected are not built, so not checked
    model = build_model(cfg, image_size=64, num_classes=3)
    assert type(model.conditioner) is conditioner_cls
    assert type(model.fusion) is fusion_cls


def test_build_model_jitter_settings(model_cfg):
    cfg = model_cfg()
    cfg["jitter"] = {"scale": 5.0, "prob": 0.5}
    model = build_model(cfg, image_size=64, num_classes=3)
    assert (model.jitter_scale, model.jitter_prob) == (5.0, 0.5)


def test_build_model_frozen_entry_freezes_its_parameters(model_cfg):
    cfg = model_cfg(condition="vit")
    _entry(cfg, "vit")["frozen"] = True
    model = build_model(cfg, image_size=64, num_classes=3)
    assert not any(p.requires_grad for p in model.conditioner.parameters())
    assert all(p.requires_grad for p in model.fusion.parameters())


def _set(key, value):
    """Config edit: set a top-level key of the model config."""

    def edit(cfg):
        cfg[key] = value

    return edit


def _set_entry(name, key, value):
    """Config edit: set ``key`` of the net entry ``name``."""

    def edit(cfg):
        _entry(cfg, name)[key] = value

    return edit


def _set_kwarg(name, kwarg, value):
    """Config edit: set one constructor kwarg of the net entry ``name``."""

    def edit(cfg):
        _entry(cfg, name)["kwargs"][kwarg] = value

    return edit


def _drop_entry(name):
    def edit(cfg):
        cfg["net"] = [entry for entry in cfg["net"] if entry["name"] != name]

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            _set_entry("neck", "type", "models.necks.FPN"),
            "entry 'neck': unknown type 'models.necks.FPN'; valid types: .*models.necks.MultiScaleConcat",
        ),
        (
            _set("condition", "mambo"),
            "model.condition: 'mambo' names no net entry of type .*; valid: .*'mamba'.*'none'",
        ),
        (_set("fusion", "concat"), "model.fusion: 'concat' names no net entry of type .*; valid: .*'ib'.*'sum'"),
        (_set("fusion", "neck"), "model.fusion: 'neck'"),
        (_set("condition", "ib"), "model.condition: 'ib' names no net entry of type models.mamba.MambaDecoder"),
        (_set_kwarg("reconstruction", "hiden_dim", 64), "entry 'reconstruction'.*unknown kwargs \\['hiden_dim'\\]"),
        (_set_kwarg("mamba", "d_stat", 4), "entry 'mamba'.*unknown kwargs \\['d_stat'\\]"),
        (_set_kwarg("neck", "in_channels", [1]), "entry 'neck': kwargs \\['in_channels'\\] are derived"),
        (_set_entry("neck", "kwargs", {}), "entry 'neck'.*missing a required argument: 'out_stride'"),
        (_set_kwarg("ib", "num_heads", 5), "entry 'ib'.*divisible"),
        (_set_kwarg("mamba", "num_layers", 3), "num_layers=3"),
        (_set_entry("backbone", "frozen", False), "always frozen"),
        (_set_kwarg("backbone", "model_name", "resnet1800"), "unknown timm backbone 'resnet1800'"),
        (_set_entry("neck", "prev", "mamba"), "entry 'neck': prev is 'mamba'"),
        (_set_entry("neck", "colour", "red"), "entry 'neck': unknown keys \\['colour'\\]"),
        (_set("modalities", ["rgb", "xyz"]), "unknown \\['xyz'\\]"),
        (_set("modalities", ["rgb", "rgb"]), "duplicates"),
        (_set("modalities", []), "non-empty"),
        (_set("jitter", {"scale": 1.0, "probability": 1.0}), "unknown config key 'model.jitter.probability'; valid"),
        (_set("fuson", "ib"), "unknown config key 'model.fuson'; did you mean 'model.fusion'"),
        (_set("feature_norm", "zscore"), "'model.feature_norm': expected one of none, standardize, got 'zscore'"),
        (_set("class_adapter_rank", -1), "'model.class_adapter_rank': expected a value in 0..inf, got -1"),
        (_drop_entry("discriminator"), "lacks the entries \\['discriminator'\\]"),
    ],
)
def test_build_model_config_errors(model_cfg, edit, match):
    cfg = model_cfg()
    edit(cfg)
    with pytest.raises(ConfigError, match=match):
        build_model(cfg, image_size=64, num_classes=3)


@pytest.mark.parametrize(("feature_norm", "built"), [("none", False), ("standardize", True)])
def test_build_model_feature_norm_switch(model_cfg, feature_norm, built):
    cfg = model_cfg()
    cfg["feature_norm"] = feature_norm
    model = build_model(cfg, image_size=64, num_classes=3)
    assert (model.feature_norm is not None) is built
    if built:
        assert model.feature_norm.modalities == model.modalities and not bool(model.feature_norm.fitted)
        assert model.feature_norm.mean_rgb.shape == (model.neck.out_channels,)


@pytest.mark.parametrize("rank", [0, 3])
def test_build_model_class_adapter_switch(model_cfg, rank):
    cfg = model_cfg()
    cfg["class_adapter_rank"] = rank
    model = build_model(cfg, image_size=64, num_classes=3)
    assert (model.router is not None) is bool(rank)
    for reconstruction in model.reconstructions.values():
        assert (reconstruction.adapters is not None) is bool(rank)
        if rank:
            assert {a.num_classes for a in reconstruction.adapters.values()} == {3}
            assert {a.rank for a in reconstruction.adapters.values()} == {rank}


def test_build_model_rejects_image_size_not_multiple_of_stride(model_cfg):
    with pytest.raises(ConfigError, match="multiple of 16"):
        build_model(model_cfg(), image_size=72, num_classes=3)


def test_registry_types_resolve_to_their_classes():
    import importlib

    for type_name, (module, name) in REGISTRY.items():
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, torch.nn.Module), type_name
        assert type_name.rsplit(".", 1)[1] == name
