"""Build the IB-IUMAD network from the ``model:`` section of the config.

The ``net`` list names every part; entries are found by ``name`` and wired by ``prev``:
``backbone → neck → reconstruction → fusion``. Shapes flow as constructor arguments (the neck gets
the backbone's channels/strides from timm's ``feature_info``, the reconstruction the neck's channels
and feature size, the conditioner the neck stride and the reconstruction's width/depth, the fusion the
per-modality channels) and are never written back into the config. The switches ``condition`` and
``fusion`` name the entries used; entries not selected are not built. ``type`` strings are resolved
through an explicit registry.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from models.class_adapters import PrototypeRouter
from models.feature_norm import FeatureStandardizer
from models.ib_iumad import IBIUMAD, check_modalities
from models.map_fusion import NormalMapFusion
from utils.config import validate_section
from utils.errors import ConfigError

__all__ = ["build_model", "REGISTRY"]

# Config ``type`` → (module, class). Resolved lazily so unused parts (e.g. the Mamba decoder) are not imported.
REGISTRY: dict[str, tuple[str, str]] = {
    "models.backbones.TimmFeatureExtractor": ("models.backbones.timm_backbone", "TimmFeatureExtractor"),
    "models.necks.MultiScaleConcat": ("models.necks.multiscale", "MultiScaleConcat"),
    "models.mamba.MambaDecoder": ("models.mamba", "MambaDecoder"),
    "models.conditioners.ViTConditioner": ("models.conditioners", "ViTConditioner"),
    "models.reconstructions.ReconstructionTransformer": (
        "models.reconstructions.transformer",
        "ReconstructionTransformer",
    ),
    "models.fusion.IBFusion": ("models.fusion.ib_fusion", "IBFusion"),
    "models.fusion.SumFusion": ("models.fusion.sum_fusion", "SumFusion"),
    "models.discriminator.Discriminator": ("models.discriminator", "Discriminator"),
}

_ENTRY_KEYS = {"name", "type", "kwargs", "prev", "frozen"}
# Roles with a fixed entry name; the conditioner and the fusion are the entries named by the switches.
_FIXED_ROLES = ("backbone", "neck", "reconstruction", "discriminator")
_SWITCH_TYPES = {
    "condition": ("models.mamba.MambaDecoder", "models.conditioners.ViTConditioner"),
    "fusion": ("models.fusion.IBFusion", "models.fusion.SumFusion"),
}


def _resolve(entry: Mapping[str, Any]) -> type[nn.Module]:
    """Class of a net entry's ``type`` through the registry."""
    type_name = entry["type"]
    if type_name not in REGISTRY:
        raise ConfigError(
            f"model.net entry '{entry['name']}': unknown type '{type_name}'; valid types: {', '.join(sorted(REGISTRY))}"
        )
    module_name, class_name = REGISTRY[type_name]
    return getattr(importlib.import_module(module_name), class_name)


def _instantiate(entry: Mapping[str, Any], derived: Mapping[str, Any]) -> nn.Module:
    """Construct an entry from its ``kwargs`` plus the arguments derived from the wiring.

    Raises:
        ConfigError: unknown/missing/derived kwargs, or a constructor rejecting a value.
    """
    name = entry["name"]
    cls = _resolve(entry)
    kwargs = entry.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"model.net entry '{name}': kwargs must be a mapping, got {type(kwargs).__name__}")
    clash = sorted(set(kwargs) & set(derived))
    if clash:
        raise ConfigError(
            f"model.net entry '{name}': kwargs {clash} are derived from the wiring (prev entries, image size, "
            "number of classes); remove them from the config"
        )
    signature = inspect.signature(cls)
    params = signature.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not accepts_any:
        unknown = sorted(k for k in kwargs if k not in params)
        if unknown:
            raise ConfigError(
                f"model.net entry '{name}' ({entry['type']}): unknown kwargs {unknown}; "
                f"valid: {sorted(k for k in params if k not in derived)}"
            )
    arguments = {**_plain(kwargs), **derived}
    try:
        signature.bind(**arguments)
    except TypeError as err:
        raise ConfigError(f"model.net entry '{name}' ({entry['type']}): {err}") from err
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.net entry '{name}' ({entry['type']}): {err}") from err


def _plain(value: Any) -> Any:
    """Deep copy of config containers (lists become lists, mappings dicts) so modules never alias the config."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _index_entries(net: Any) -> dict[str, Mapping[str, Any]]:
    """Validate the ``net`` list and index it by name."""
    if not isinstance(net, list) or not net:
        raise ConfigError("model.net must be a non-empty list of entries")
    entries: dict[str, Mapping[str, Any]] = {}
    for position, entry in enumerate(net):
        if not isinstance(entry, Mapping) or "name" not in entry or "type" not in entry:
            raise ConfigError(f"model.net[{position}] must be a mapping with at least 'name' and 'type'")
        unknown = sorted(set(entry) - _ENTRY_KEYS)
        if unknown:
            raise ConfigError(
                f"model.net entry '{entry['name']}': unknown keys {unknown}; valid: {sorted(_ENTRY_KEYS)}"
            )
        if entry["name"] in entries:
            raise ConfigError(f"model.net: duplicate entry name '{entry['name']}'")
        entries[entry["name"]] = entry
    return entries


def _select(entries: Mapping[str, Mapping[str, Any]], switch: str, value: Any, allow_none: bool) -> str | None:
    """Entry name chosen by a switch (``condition`` / ``fusion``)."""
    if allow_none and (value is None or value == "none"):
        return None
    types = _SWITCH_TYPES[switch]
    if not isinstance(value, str) or value not in entries or entries[value]["type"] not in types:
        choices = [n for n, e in entries.items() if e["type"] in types] + (["none"] if allow_none else [])
        raise ConfigError(f"model.{switch}: '{value}' names no net entry of type {' / '.join(types)}; valid: {choices}")
    return value


def _check_prev(entry: Mapping[str, Any], expected: str) -> None:
    """An entry's ``prev`` (when given) must name the entry it is wired to."""
    prev = entry.get("prev")
    if prev is not None and prev != expected:
        raise ConfigError(
            f"model.net entry '{entry['name']}': prev is '{prev}', but it takes its input from '{expected}' "
            "(wiring: backbone → neck → reconstruction → fusion)"
        )


def _apply_frozen(entry: Mapping[str, Any], module: nn.Module) -> None:
    """Freeze an entry's parameters when ``frozen: true``."""
    frozen = entry.get("frozen", False)
    if not isinstance(frozen, bool):
        raise ConfigError(f"model.net entry '{entry['name']}': frozen must be true or false, got {frozen!r}")
    if frozen:
        module.requires_grad_(False)


def _modalities(value: Any) -> list[str]:
    """Validate ``model.modalities``."""
    try:
        return check_modalities(value)
    except ValueError as err:
        raise ConfigError(f"model.modalities: {err}") from None


def _switches(model_cfg: Mapping[str, Any], entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The switches of the (schema-checked) ``model`` section, with the entries the names select checked too."""
    return {
        "modalities": _modalities(model_cfg["modalities"]),
        "condition": _select(entries, "condition", model_cfg["condition"], allow_none=True),
        "fusion": _select(entries, "fusion", model_cfg["fusion"], allow_none=False),
        "jitter": model_cfg["jitter"],
        "feature_norm": model_cfg["feature_norm"],
        "adapter_rank": model_cfg["class_adapter_rank"],
        "map_fusion": model_cfg["map_fusion"],
        "score_region": model_cfg["score_region"],
    }


def _build_frozen_part(entries: Mapping[str, Mapping[str, Any]], image_size: int) -> tuple[nn.Module, nn.Module]:
    """The backbone (always frozen) and the neck, checked against the image size."""
    backbone_entry = entries["backbone"]
    if backbone_entry.get("frozen", True) is not True:
        raise ConfigError("model.net entry 'backbone': the backbone is always frozen; set `frozen: true`")
    backbone = _instantiate(backbone_entry, {})
    neck_entry = entries["neck"]
    _check_prev(neck_entry, "backbone")
    neck = _instantiate(neck_entry, {"in_channels": backbone.channels, "in_strides": backbone.strides})
    _apply_frozen(neck_entry, neck)
    coarsest = max([*backbone.strides, neck.stride])
    if image_size <= 0 or image_size % coarsest:
        raise ConfigError(f"image_size {image_size} must be a positive multiple of {coarsest} (the coarsest stride)")
    return backbone, neck


def _build_reconstructions(
    entries: Mapping[str, Mapping[str, Any]], neck: nn.Module, image_size: int, switches: dict, num_classes: int
) -> dict[str, nn.Module]:
    """One reconstruction network (MRN) per modality, with class adapters when asked for."""
    entry = entries["reconstruction"]
    _check_prev(entry, "neck")
    derived = {"in_channels": neck.out_channels, "feature_size": neck.output_size(image_size)}
    if switches["adapter_rank"]:
        derived |= {"class_adapter_rank": switches["adapter_rank"], "num_classes": num_classes}
    reconstructions = {}
    for modality in switches["modalities"]:
        reconstructions[modality] = _instantiate(entry, derived)
        _apply_frozen(entry, reconstructions[modality])
    return reconstructions


def _build_conditioner(
    entries: Mapping[str, Mapping[str, Any]], switches: dict, first: nn.Module, neck: nn.Module, image_size: int,
    num_classes: int,
) -> nn.Module | None:
    """The object-aware conditioner (Mamba decoder or ViT) sized to the reconstruction networks, or None."""
    if switches["condition"] is None:
        return None
    entry = entries[switches["condition"]]
    conditioner = _instantiate(
        entry,
        {
            "modalities": list(switches["modalities"]),
            "image_size": image_size,
            "patch_size": neck.stride,
            "cond_dim": first.hidden_dim,
            "num_cond_layers": first.num_encoder_layers,
            "num_classes": num_classes,
        },
    )
    _apply_frozen(entry, conditioner)
    return conditioner


def _build_fusion(entries: Mapping[str, Mapping[str, Any]], switches: dict, neck: nn.Module, num_classes: int):
    entry = entries[switches["fusion"]]
    _check_prev(entry, "reconstruction")
    channels = [neck.out_channels] * len(switches["modalities"])
    fusion = _instantiate(entry, {"in_channels": channels, "num_classes": num_classes})
    _apply_frozen(entry, fusion)
    return fusion


def build_model(model_cfg: Mapping[str, Any], image_size: int, num_classes: int) -> IBIUMAD:
    """Build the network described by the ``model:`` config section (the config is not modified).

    Args:
        model_cfg: the ``model`` mapping (``modalities``, ``condition``, ``fusion``, ``net``, ``jitter``,
            ``feature_norm``, ``class_adapter_rank``, ``map_fusion``, ``score_region``).
        image_size: side ``S`` of the square input images.
        num_classes: number of object classes the class heads start with.

    Returns:
        The model; the backbone is frozen and in eval mode.

    Raises:
        ConfigError: unknown keys, types, switch values, kwargs (the schema's checks, :mod:`utils.config`);
            inconsistent wiring or sizes.
    """
    model_cfg = validate_section("model", model_cfg)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    entries = _index_entries(model_cfg["net"])
    missing = [role for role in _FIXED_ROLES if role not in entries]
    if missing:
        raise ConfigError(f"model.net lacks the entries {missing}; present: {list(entries)}")
    switches = _switches(model_cfg, entries)
    modalities = switches["modalities"]
    # Built in this order (the order of their random initialisation): backbone, neck, MRNs, conditioner, fusion.
    backbone, neck = _build_frozen_part(entries, image_size)
    reconstructions = _build_reconstructions(entries, neck, image_size, switches, num_classes)
    first = reconstructions[modalities[0]]
    conditioner = _build_conditioner(entries, switches, first, neck, image_size, num_classes)
    fusion = _build_fusion(entries, switches, neck, num_classes)
    channels = neck.out_channels
    return IBIUMAD(
        backbone=backbone,
        neck=neck,
        reconstructions=reconstructions,
        fusion=fusion,
        discriminator=_instantiate(entries["discriminator"], {}),
        modalities=modalities,
        image_size=image_size,
        num_classes=num_classes,
        conditioner=conditioner,
        jitter_scale=switches["jitter"]["scale"],
        jitter_prob=switches["jitter"]["prob"],
        feature_norm=FeatureStandardizer(modalities, channels) if switches["feature_norm"] == "standardize" else None,
        router=PrototypeRouter(channels * len(modalities), num_classes) if switches["adapter_rank"] else None,
        map_fusion=NormalMapFusion(modalities, num_classes) if switches["map_fusion"] == "normal_zmax" else None,
        score_region=switches["score_region"],
    )
