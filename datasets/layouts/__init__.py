"""Dataset layouts: how a dataset's folders become meta records (``dataset.layout``; DESIGN §4).

A layout is a function ``scan(root) -> (train_records, test_records)`` registered under a name with
:func:`register_layout`; :func:`datasets.meta.build_meta` looks it up, checks for leaked test images and
writes the records. A record holds ``filename`` (the RGB image), ``label``, ``label_name``, ``clsname``,
``split``, ``maskname`` for defective test samples and, where the layout has point clouds, ``xyzname``
(the depth modality needs it; an RGB-only model does not read it). Paths are relative to ``root``.

Adding a layout is one module that calls :func:`register_layout` and one line in :data:`_LAYOUT_MODULES`
(so that a config naming it finds it without an import); a layout registered elsewhere before the run
starts (a script, a test) is found as well.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from utils.errors import ConfigError

__all__ = ["LayoutScan", "register_layout", "layout_scanner", "layout_names"]

LayoutScan = Callable[[Path], tuple[list[dict], list[dict]]]

#: Layout name → the module that registers it (imported on first use, so a script pays only for its layout).
_LAYOUT_MODULES = {
    "mvtec3d": "datasets.layouts.mvtec3d",
    "mvtec_ad": "datasets.layouts.mvtec_ad",
    "visa": "datasets.layouts.visa",
}

_SCANNERS: dict[str, LayoutScan] = {}


def register_layout(name: str) -> Callable[[LayoutScan], LayoutScan]:
    """Register the decorated ``scan(root)`` function as the scanner of layout ``name``."""

    def register(scan: LayoutScan) -> LayoutScan:
        if name in _SCANNERS and _SCANNERS[name] is not scan:
            raise ValueError(f"layout '{name}' is registered twice")
        _SCANNERS[name] = scan
        return scan

    return register


def layout_names() -> list[str]:
    """The names ``dataset.layout`` accepts."""
    return sorted(set(_LAYOUT_MODULES) | set(_SCANNERS))


def layout_scanner(name: str) -> LayoutScan:
    """The scanner of layout ``name``.

    Raises:
        ConfigError: an unknown layout, naming the known ones.
    """
    if name in _LAYOUT_MODULES:
        importlib.import_module(_LAYOUT_MODULES[name])
    if name not in _SCANNERS:
        raise ConfigError(f"dataset.layout: unknown layout '{name}'; valid: {', '.join(layout_names())}")
    return _SCANNERS[name]
