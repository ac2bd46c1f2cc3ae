"""Run configuration: YAML files with ``_base_`` inheritance, ``--opts`` overrides and a typed schema.

Rules (DESIGN.md §3):

* ``_base_`` (a path or a list of paths, relative to the file) is loaded first; later keys override
  earlier ones. Mappings merge key by key. A list of mappings that all carry a ``name`` (the model's
  ``net`` list) merges entry by entry by that name, so a variant can change one part of the network.
* ``--opts a.b=c`` overrides one key; the value is parsed as YAML (``x=[1,2]``, ``y=null``). Inside a
  named list the name is the path element: ``model.net.backbone.kwargs.pretrained=false``.
* The merged config is checked against :data:`SCHEMA`: an unknown key is an error naming the key and
  the closest valid one; a value of the wrong type is an error naming the key, the expected type and
  the value. Missing keys take the schema's default. The free-form parts (``net`` entries' kwargs,
  the step lists) are checked where they are used.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from utils.errors import ConfigError

__all__ = [
    "SCHEMA",
    "Field",
    "Variants",
    "load_config",
    "merge_configs",
    "apply_overrides",
    "validate_config",
    "config_to_yaml",
    "config_differences",
    "schema_defaults",
    "schema_choices",
]

REQUIRED = object()
"""Marks a schema key without a default: the config files must give it."""

_NUMBER = (int, float)


class Variants(NamedTuple):
    """A section whose keys depend on its ``type``: ``catalogue()`` maps each type to the option fields it takes."""

    catalogue: Any  # () -> {type name: {option: Field}}
    removed: Any  # () -> {removed type name: why, and what to use}
    default: str


def _strategy_catalogue() -> dict[str, dict[str, Field]]:
    """The registered incremental strategies' options; imported late, since the engine builds on this module."""
    from engine.strategies import strategy_options

    return strategy_options()


def _removed_strategies() -> dict[str, str]:
    """Strategy names of earlier versions and why they are gone."""
    from engine.strategies import REMOVED_STRATEGIES

    return REMOVED_STRATEGIES


class Field(NamedTuple):
    """One config key: accepted types, default (:data:`REQUIRED`: none), allowed values, inclusive bounds."""

    types: Any
    default: Any
    choices: tuple[str, ...] | None = None
    bounds: tuple[float | None, float | None] | None = None  # (low, high), None = unbounded on that side


# Leaf: a Field. Nested dict: a section.
SCHEMA: dict[str, Any] = {
    "seed": Field(int, 133),
    "dataset": {
        "name": Field(str, REQUIRED),
        "root": Field(str, REQUIRED),
        "meta_dir": Field((str, type(None)), None),
        "layout": Field(str, "mvtec3d"),
        "image_size": Field(int, 224, bounds=(32, None)),
        "batch_size": Field(int, 24, bounds=(1, None)),
        "eval_batch_size": Field(int, 8, bounds=(1, None)),
        "workers": Field(int, 2, bounds=(0, None)),
    },
    "model": {
        "modalities": Field(list, ["rgb", "depth"]),
        "condition": Field(str, "mamba"),
        "fusion": Field(str, "ib"),
        "jitter": {
            "scale": Field(_NUMBER, 20.0, bounds=(0, None)),
            "prob": Field(_NUMBER, 1.0, bounds=(0, 1)),
        },
        "feature_norm": Field(str, "none", choices=("none", "standardize")),
        "class_adapter_rank": Field(int, 0, bounds=(0, None)),
        "map_fusion": Field(str, "concat_l2", choices=("concat_l2", "normal_zmax")),
        "score_region": Field(str, "image", choices=("image", "object")),
        "net": Field(list, REQUIRED),
    },
    "criterion": {
        "weights": {
            "rgb_ce": Field(_NUMBER, 1.0),
            "depth_ce": Field(_NUMBER, 1.0),
            "ib": Field(_NUMBER, 1.0),
            "ib_ce": Field(_NUMBER, 0.0),
            "fusion": Field(_NUMBER, 1.0),
        },
    },
    "trainer": {
        "epochs": Field(int, 100, bounds=(1, None)),
        "incremental_epochs": Field(int, 50, bounds=(1, None)),
        "max_epochs_per_step": Field((int, type(None)), None, bounds=(1, None)),
        "lr": Field(_NUMBER, 1e-4, bounds=(0, None)),
        "incremental_lr": Field((_NUMBER, type(None)), None, bounds=(0, None)),
        "weight_decay": Field(_NUMBER, 1e-4),
        "betas": Field(list, [0.9, 0.999]),
        "clip_grad_norm": Field((_NUMBER, type(None)), 0.1),
        "scheduler": {
            "type": Field(str, "step", choices=("step", "cosine", "constant")),
            "step_size_fraction": Field(_NUMBER, 0.8),
            "step_epochs": Field((int, type(None)), None, bounds=(1, None)),
            "gamma": Field(_NUMBER, 0.1),
        },
        "select": Field(str, "last", choices=("last", "val")),
        "precision": Field(str, "fp32", choices=("fp32", "bf16")),
        "val_fraction": Field(_NUMBER, 0.1, bounds=(0, 0.9)),
        "save_every_epochs": Field(int, 0, bounds=(0, None)),
        "feature_cache": Field(str, "auto", choices=("auto", "memory", "disk", "off")),
        "feature_cache_max_gb": Field(_NUMBER, 8.0),
    },
    "incremental": {
        "steps": Field(list, REQUIRED),
        # engine/strategies/: a type and the options that type takes
        "regularizer": Variants(_strategy_catalogue, _removed_strategies, "none"),
    },
    "evaluation": {
        "vis_per_class": Field(int, 2, bounds=(0, None)),
        "aupro_mode": Field(str, "exact", choices=("exact", "compat")),
    },
}


def schema_defaults(section: str) -> dict[str, Any]:
    """Defaults of a schema section, e.g. ``schema_defaults("criterion.weights")`` (the builders use these)."""
    node: Any = SCHEMA
    for part in section.split("."):
        node = node[part]
    return {key: copy.deepcopy(spec.default) for key, spec in node.items() if isinstance(spec, Field)}


def schema_choices(key: str) -> tuple[str, ...]:
    """Allowed values of a string switch, e.g. ``schema_choices("model.feature_norm")``."""
    return _field(key).choices


def _field(key: str) -> Field:
    node: Any = SCHEMA
    for part in key.split("."):
        node = node[part]
    return node


def _is_named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) and "name" in v for v in value)


def merge_configs(base: Any, override: Any) -> Any:
    """Merge ``override`` into ``base`` (neither is modified).

    Mappings merge recursively, except that a mapping whose ``type`` changes is replaced (its other keys,
    e.g. a strategy's options, belong to the old type); lists of named mappings merge by ``name`` (new
    names are appended); anything else is replaced.
    """
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        if "type" in override and override["type"] != base.get("type", override["type"]):
            return copy.deepcopy(dict(override))  # the other keys of a section belong to its type
        merged = dict(copy.deepcopy(base))
        for key, value in override.items():
            merged[key] = merge_configs(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    if _is_named_list(base) and _is_named_list(override):
        merged_list = [copy.deepcopy(entry) for entry in base]
        index = {entry["name"]: i for i, entry in enumerate(merged_list)}
        for entry in override:
            if entry["name"] in index:
                merged_list[index[entry["name"]]] = merge_configs(merged_list[index[entry["name"]]], entry)
            else:
                merged_list.append(copy.deepcopy(entry))
        return merged_list
    return copy.deepcopy(override)


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML loader that also reads exponent floats without a dot (``1e-4``, YAML 1.2) as numbers."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _parse_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _load_with_bases(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"_base_ cycle: {' -> '.join(str(p) for p in (*chain, path))}")
    data = _read_yaml(path)
    bases = data.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    merged: dict = {}
    for base in bases:
        merged = merge_configs(merged, _load_with_bases(path.parent / base, (*chain, path)))
    return merge_configs(merged, data)


def _set_path(cfg: dict, dotted: str, value: Any) -> None:
    node: Any = cfg
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            names = [e.get("name") for e in node if isinstance(e, Mapping)]
            if part not in names:
                raise ConfigError(f"--opts {dotted}: no entry named '{part}' (entries: {', '.join(map(str, names))})")
            if last:
                raise ConfigError(f"--opts {dotted}: cannot replace a whole named entry; set one of its keys")
            node = node[names.index(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--opts {dotted}: '{'.'.join(parts[:i])}' is a value, not a section")


def apply_overrides(cfg: dict, opts: list[str]) -> dict:
    """Return ``cfg`` with ``key.path=value`` overrides applied (values parsed as YAML)."""
    cfg = copy.deepcopy(cfg)
    for opt in opts:
        if "=" not in opt:
            raise ConfigError(f"--opts expects key=value, got '{opt}'")
        key, raw = opt.split("=", 1)
        try:
            value = _parse_yaml(raw)
        except yaml.YAMLError:
            value = raw
        _set_path(cfg, key.strip(), value)
    return cfg


def _type_name(types: Any) -> str:
    types = types if isinstance(types, tuple) else (types,)
    flat = []
    for t in types:
        flat.extend(t if isinstance(t, tuple) else (t,))
    return " or ".join("null" if t is type(None) else t.__name__ for t in flat)


def _check_leaf(key: str, value: Any, field: Field) -> Any:
    types = field.types
    if value is False and "off" in (field.choices or ()):
        value = "off"  # YAML 1.1 reads an unquoted `off` as false
    flat = types if isinstance(types, tuple) else (types,)
    flat = tuple(t for group in flat for t in (group if isinstance(group, tuple) else (group,)))
    if isinstance(value, bool) and bool not in flat:
        raise ConfigError(f"config key '{key}': expected {_type_name(types)}, got {value!r}")
    if not isinstance(value, flat):
        raise ConfigError(f"config key '{key}': expected {_type_name(types)}, got {value!r} ({type(value).__name__})")
    if field.choices is not None and value not in field.choices:
        raise ConfigError(f"config key '{key}': expected one of {', '.join(field.choices)}, got {value!r}")
    low, high = field.bounds if field.bounds is not None and value is not None else (None, None)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{'-inf' if low is None else low}..{'inf' if high is None else high}"
        raise ConfigError(f"config key '{key}': expected a value in {bounds}, got {value!r}")
    if float in flat and int in flat and isinstance(value, int):
        return float(value)
    return value


def _validate_variants(value: Any, spec: Variants, full: str) -> dict:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key '{full}': expected a section (mapping), got {value!r}")
    kind = value.get("type", spec.default)
    catalogue, removed = spec.catalogue(), spec.removed()
    if kind in removed:
        raise ConfigError(f"config key '{full}.type': '{kind}' was removed: {removed[kind]}")
    if kind not in catalogue:
        raise ConfigError(f"config key '{full}.type': expected one of {', '.join(sorted(catalogue))}, got {kind!r}")
    options = {k: v for k, v in value.items() if k != "type"}
    return {"type": kind, **_validate_section(options, catalogue[kind], f"{full}.")}


def _validate_section(cfg: Mapping, schema: Mapping, prefix: str) -> dict:
    for key in cfg:
        if key not in schema:
            full = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            valid = f"; valid keys: {', '.join(schema)}" if schema else f"; '{prefix.rstrip('.')}' takes no keys here"
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else valid
            raise ConfigError(f"unknown config key '{full}'{hint}")
    out = {}
    for key, spec in schema.items():
        full = f"{prefix}{key}"
        if isinstance(spec, Variants):
            out[key] = _validate_variants(cfg.get(key, {}), spec, full)
        elif isinstance(spec, dict):
            value = cfg.get(key, {})
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{full}': expected a section (mapping), got {value!r}")
            out[key] = _validate_section(value, spec, f"{full}.")
        elif key in cfg:
            out[key] = _check_leaf(full, cfg[key], spec)
        elif spec.default is REQUIRED:
            raise ConfigError(f"config key '{full}' is required but missing")
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def validate_section(name: str, value: Any) -> dict:
    """Check one top-level section (e.g. ``model``) against :data:`SCHEMA`; return it with defaults filled in.

    For code that gets a section without the whole config (``build_model`` from a script or a test).

    Raises:
        ConfigError: what :func:`validate_config` says about that section.
    """
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key '{name}': expected a section (mapping), got {value!r}")
    return _validate_section(value, SCHEMA[name], f"{name}.")


def validate_config(cfg: Mapping) -> dict:
    """Check ``cfg`` against :data:`SCHEMA`; return a new dict with defaults filled in."""
    out = _validate_section(cfg, SCHEMA, "")
    if out["trainer"]["select"] == "val" and out["trainer"]["val_fraction"] == 0:
        raise ConfigError("trainer.select: val needs held-out training normals: set trainer.val_fraction above 0")
    if out["model"]["score_region"] == "object" and out["dataset"]["layout"] in ("mvtec_ad", "visa"):
        raise ConfigError(f"model.score_region: object needs point clouds; dataset.layout "
                          f"{out['dataset']['layout']} has none (use image)")
    steps = out["incremental"]["steps"]
    if not steps or not all(isinstance(s, Mapping) and isinstance(s.get("classes"), list) for s in steps):
        raise ConfigError("config key 'incremental.steps': expected a list of {classes: [...]} entries")
    seen: dict[str, int] = {}
    for k, step in enumerate(steps):
        if set(step) - {"classes", "epochs"}:
            raise ConfigError(
                f"config key 'incremental.steps[{k}]': only 'classes' and 'epochs' are allowed, got {sorted(step)}"
            )
        epochs = step.get("epochs", 1)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"config key 'incremental.steps[{k}].epochs': expected an integer >= 1, got {epochs!r}")
        if not step["classes"]:
            raise ConfigError(f"config key 'incremental.steps[{k}].classes' is empty")
        for name in step["classes"]:
            if name in seen:
                raise ConfigError(f"class '{name}' appears in step {seen[name]} and again in step {k}")
            seen[name] = k
    return out


def load_config(path: str | Path, opts: list[str] | None = None) -> dict:
    """Load a config file with its ``_base_`` chain, apply ``opts`` and validate it."""
    cfg = _load_with_bases(Path(path))
    return validate_config(apply_overrides(cfg, list(opts or [])))


def config_to_yaml(cfg: Mapping) -> str:
    """The resolved config as YAML text (saved with every run)."""
    return yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=None)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key → leaf value (lists are leaves)."""
    if not isinstance(value, Mapping):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_differences(old: Mapping, new: Mapping, ignore: frozenset[str] = frozenset()) -> list[str]:
    """The leaves that differ between two resolved configs, as ``"key: old -> new"`` (sorted by key).

    Both sides go through YAML first, so a saved ``config.yaml`` compares equal to the config it was
    written from. Keys in ``ignore`` (dotted) are skipped; a key on one side only shows as ``<absent>``.
    """
    flat_old, flat_new = (_flatten(yaml.safe_load(config_to_yaml(c))) for c in (old, new))
    missing = "<absent>"
    return [
        f"{key}: {flat_old.get(key, missing)!r} -> {flat_new.get(key, missing)!r}"
        for key in sorted(set(flat_old) | set(flat_new))
        if key not in ignore and flat_old.get(key, missing) != flat_new.get(key, missing)
    ]
