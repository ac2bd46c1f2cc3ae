"""Data: MVTec 3D-AD-layout files, meta tables, RGB + depth samples and loaders (DESIGN §4).

Named ``datasets`` as users of this family of codebases expect; entry points put the repository
root first on ``sys.path`` so an installed HuggingFace ``datasets`` cannot shadow it.

The public names below are imported on first use (PEP 562), so the data-preparation scripts,
which never touch the PyTorch dataset or loader, do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, str]] = {
    "IMAGENET_MEAN": ("datasets.rgbd_dataset", "IMAGENET_MEAN"),
    "IMAGENET_STD": ("datasets.rgbd_dataset", "IMAGENET_STD"),
    "RGBDDataset": ("datasets.rgbd_dataset", "RGBDDataset"),
    "SYNTHETIC_CLASSES": ("datasets.synthetic", "CLASS_NAMES"),
    "SYNTHETIC_DEFECTS": ("datasets.synthetic", "DEFECT_TYPES"),
    "build_loader": ("datasets.loader", "build_loader"),
    "build_shard_loader": ("datasets.loader", "build_shard_loader"),
    "build_meta": ("datasets.meta", "build_meta"),
    "convert_eyecandies": ("datasets.eyecandies", "convert_eyecandies"),
    "fill_depth_holes": ("datasets.depth", "fill_depth_holes"),
    "fit_plane_ransac": ("datasets.depth", "fit_plane_ransac"),
    "load_meta": ("datasets.meta", "load_meta"),
    "make_dataset": ("datasets.synthetic", "make_dataset"),
    "read_mask": ("datasets.io", "read_mask"),
    "read_meta": ("datasets.meta", "read_meta"),
    "read_rgb": ("datasets.io", "read_rgb"),
    "read_xyz": ("datasets.io", "read_xyz"),
    "remove_background_plane": ("datasets.depth", "remove_background_plane"),
    "remove_background_tree": ("datasets.preprocess", "remove_background_tree"),
    "write_mask": ("datasets.io", "write_mask"),
    "write_meta": ("datasets.meta", "write_meta"),
    "write_rgb": ("datasets.io", "write_rgb"),
    "write_xyz": ("datasets.io", "write_xyz"),
    "xyz_to_depth": ("datasets.depth", "xyz_to_depth"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'datasets' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module_name), attribute)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
