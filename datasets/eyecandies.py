"""Eyecandies → MVTec 3D-AD layout (DESIGN §4; the paper's second benchmark).

Eyecandies stores every sample of ``<Class>/<split>/data/`` as ``<idx>_<item>`` files: ``image_0`` …
``image_5`` (RGB under six lighting set-ups; 5 = global lighting), ``depth.png`` (16-bit, normalised),
``info_depth.yaml`` (the normalisation bounds), ``mask.png`` (test_public), ``normals.png``, ``pose.txt``.

Conversion, from the format facts (not from any public converter):

* depth in metres: ``z = d / 65535 · (max − min) + min`` with ``min``/``max`` read from
  ``info_depth.yaml`` — the published files hold ``normalization: {min: …, max: …}``; flat
  ``min_depth``/``max_depth`` keys are accepted too.
* organised cloud in the camera frame (``pose.txt`` is not applied, like MVTec 3D-AD clouds):
  ``x = (u − W/2)·z / f``, ``y = (v − H/2)·z / f`` with ``u``/``v`` the pixel column/row index and
  ``f = 711.11`` px.
* background rule: a pixel whose raw depth is 65535 (at or beyond the far normalisation bound, i.e.
  nothing measured in range) becomes exactly ``(0, 0, 0)``. The conveyor belt under the candy is a
  real surface and stays; remove it with ``A_ori_dataset_split/MVTec_3D-AD/preprocess.py`` (RANSAC plane).
* splits: ``train`` → ``train/good``, ``val`` → ``validation/good``, ``test_public`` → ``test/good``
  (empty mask) or ``test/bad``; every test sample gets a 0/255 ``gt`` mask (all zero for good).
  ``test_private`` has no labels and is skipped. File stems keep the Eyecandies index.
* class folders ``CandyCane`` … become lower_snake ``candy_cane`` …; their sorted order is unchanged.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml

from datasets.io import read_mask, write_mask, write_xyz
from utils.errors import DataError

__all__ = ["EYECANDIES_FOCAL", "class_folder_name", "read_depth_bounds", "depth_to_xyz", "convert_eyecandies"]

LOGGER = logging.getLogger(__name__)

EYECANDIES_FOCAL = 711.11
DEPTH_MAX_RAW = 65535
_SPLITS = (("train", "train"), ("val", "validation"), ("test_public", "test"))
_IMAGE_COUNT = 6


def class_folder_name(name: str) -> str:
    """``CandyCane`` → ``candy_cane`` (names already in lower_snake are kept)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def read_depth_bounds(path: str | Path) -> tuple[float, float]:
    """Read ``(min, max)`` metres from an Eyecandies ``info_depth.yaml``.

    Raises:
        DataError: missing file, unreadable YAML, missing keys, or ``max <= min``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"depth normalisation file not found: {path}")
    try:
        info = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"depth normalisation file is not valid YAML ({exc}): {path}") from exc
    info = info if isinstance(info, dict) else {}
    bounds = info.get("normalization") if isinstance(info.get("normalization"), dict) else {}
    low = bounds.get("min", info.get("min_depth"))
    high = bounds.get("max", info.get("max_depth"))
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        raise DataError(f"expected 'normalization: {{min, max}}' (or 'min_depth'/'max_depth') numbers in {path}")
    if high <= low:
        raise DataError(f"depth bounds must satisfy max > min, found min={low} max={high} in {path}")
    return float(low), float(high)


def depth_to_xyz(raw: np.ndarray, min_depth: float, max_depth: float, focal: float = EYECANDIES_FOCAL) -> np.ndarray:
    """Back-project a normalised 16-bit depth map into an organised cloud (module docstring).

    Args:
        raw: ``uint16`` ``(H, W)`` normalised depth.
        min_depth: metres of raw value 0.
        max_depth: metres of raw value 65535.
        focal: focal length in pixels; the principal point is ``(W/2, H/2)``.

    Returns:
        ``float32`` ``(H, W, 3)`` in metres, ``(0, 0, 0)`` where ``raw == 65535``.
    """
    if raw.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {raw.shape}")
    height, width = raw.shape
    z = raw.astype(np.float64) / DEPTH_MAX_RAW * (max_depth - min_depth) + min_depth
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    xyz = np.stack([(u - width / 2) * z / focal, (v - height / 2) * z / focal, z], axis=-1).astype(np.float32)
    xyz[raw == DEPTH_MAX_RAW] = 0.0
    return xyz


def _read_depth_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"depth map not found: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"depth map cannot be decoded: {path}")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataError(f"depth map must be a 16-bit single-channel PNG, found {raw.dtype} {raw.shape}: {path}")
    return raw


def _convert_sample(data: Path, idx: str, target: Path, image_index: int, compress: bool) -> None:
    """Write rgb and xyz of one sample under ``target`` (``<split>/<label>`` chosen by the caller)."""
    image = data / f"{idx}_image_{image_index}.png"
    if not image.is_file():
        raise DataError(f"image not found: {image}")
    low, high = read_depth_bounds(data / f"{idx}_info_depth.yaml")
    xyz = depth_to_xyz(_read_depth_png(data / f"{idx}_depth.png"), low, high)
    (target / "rgb").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image, target / "rgb" / f"{idx}.png")
    write_xyz(target / "xyz" / f"{idx}.tiff", xyz, compress=compress)


def _sample_ids(data: Path) -> list[str]:
    ids = sorted(p.name[: -len("_depth.png")] for p in data.glob("*_depth.png"))
    if not ids:
        raise DataError(f"no '<idx>_depth.png' sample in {data}")
    return ids


def _convert_class(class_dir: Path, out_class: Path, image_index: int, compress: bool) -> dict[str, int]:
    counts: dict[str, int] = {}
    for source, split in _SPLITS:
        data = class_dir / source / "data"
        if not data.is_dir():
            if source == "val":
                continue
            raise DataError(f"unknown Eyecandies layout: {data} not found (expected <Class>/{source}/data/)")
        for idx in _sample_ids(data):
            label = "good"
            mask = None
            if split == "test":
                mask = read_mask(data / f"{idx}_mask.png")
                label = "bad" if mask.any() else "good"
            target = out_class / split / label
            _convert_sample(data, idx, target, image_index, compress)
            if mask is not None:
                write_mask(target / "gt" / f"{idx}.png", mask)
            counts[f"{split}/{label}"] = counts.get(f"{split}/{label}", 0) + 1
    return counts


def convert_eyecandies(root: str | Path, out: str | Path, image_index: int = 5, compress: bool = False) -> Path:
    """Convert an Eyecandies download into the MVTec 3D-AD layout.

    Args:
        root: folder holding the class folders (``CandyCane/``, …).
        out: new or empty output folder.
        image_index: which of ``image_0`` … ``image_5`` becomes the RGB image.
        compress: deflate-compress the xyz TIFFs.

    Returns:
        The output root.

    Raises:
        DataError: unknown layout, a missing or unreadable file (named), or a non-empty ``out``.
    """
    root, out = Path(root), Path(out)
    if not 0 <= image_index < _IMAGE_COUNT:
        raise DataError(f"image_index must be in 0..{_IMAGE_COUNT - 1}, got {image_index}")
    if not root.is_dir():
        raise DataError(f"Eyecandies root is not a folder: {root}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder exists and is not empty: {out} (choose a new folder)")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"unknown Eyecandies layout: no class folder in {root}")
    for class_dir in class_dirs:
        counts = _convert_class(class_dir, out / class_folder_name(class_dir.name), image_index, compress)
        LOGGER.info("converted %s: %s", class_dir.name, counts)
    return out
