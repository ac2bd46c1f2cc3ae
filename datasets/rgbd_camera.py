"""A depth camera's RGB + depth images and pinhole intrinsics as one split folder of the MVTec 3D-AD layout.

The command line is ``A_ori_dataset_split/Custom/convert_rgbd.py``. Files are matched by stem
(``cam/rgb/0007.jpg`` ↔ ``cam/depth/0007.png`` ↔ ``cam/masks/0007.png``); each sample becomes
``<out>/rgb/NAME.png``, ``<out>/xyz/NAME.tiff`` and, with masks, ``<out>/gt/NAME.png``.

Inputs:

* RGB: 8-bit colour or grey image (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``), re-encoded as PNG.
* depth, one file per stem, either

  - a depth image: 16-bit single-channel PNG, or a single-channel ``.tif``/``.tiff``/``.npy`` of any numeric
    type; ``z = value · depth_scale`` metres (default 0.001: millimetres; 1 for a float TIFF in metres),
    back-projected with the pinhole model, ``u`` the pixel column and ``v`` the pixel row (pixel centres at
    integer coordinates, the OpenCV convention)::

        x = (u − cx) · z / fx,    y = (v − cy) · z / fy,    z

    Only these files need ``--fx --fy --cx --cy`` (pixels);
  - an organised point cloud: float ``.tif``/``.tiff``/``.npy`` of shape (H, W, 3) in metres, taken as is
    (neither intrinsics nor ``--depth-scale`` apply).

  Missing points become exactly (0, 0, 0): a depth of 0 (also a negative, NaN or inf one) and a cloud point
  with ``z <= 0`` or a non-finite coordinate.
* masks (``--masks``, for ``test/<defect>``): single-channel 8/16-bit ``.png``/``.bmp``/``.tif``/``.tiff``;
  any non-zero pixel is defect (:func:`datasets.io.read_mask`: 0/1 and 0/255 masks both work); written as 0/255.

Refusals (one line, exit code 2, naming the file or stems): an empty or missing input folder, a file
without its partner (RGB without depth, depth without RGB, mask without RGB and RGB without mask), two
files with one stem, an unreadable file, RGB/depth/mask size mismatch, a file without a single valid
depth, a depth image without intrinsics, and a non-empty ``--out``. The outputs are written into a
hidden staging folder (ignored by the layout scanner) in the nearest existing ancestor of ``--out``, which
is renamed to ``--out`` only once every sample is converted: an error leaves nothing behind, not even the
parents of ``--out``.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile

from datasets.io import read_mask, read_rgb, write_mask, write_rgb, write_xyz
from datasets.layouts.folders import visible_children
from utils.errors import ConfigError, DataError

__all__ = [
    "Intrinsics",
    "intrinsics_from_flags",
    "Sample",
    "pair_files",
    "backproject",
    "read_depth_as_xyz",
    "convert_rgbd",
    "RGB_SUFFIXES",
    "DEPTH_SUFFIXES",
    "DEFAULT_DEPTH_SCALE",
    "INTRINSIC_FLAGS",
]

LOGGER = logging.getLogger(__name__)

RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
DEFAULT_DEPTH_SCALE = 0.001
INTRINSIC_FLAGS = ("fx", "fy", "cx", "cy")
_STEMS_SHOWN = 5


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera intrinsics in pixels: focal lengths ``fx``, ``fy`` (> 0) and principal point ``cx``, ``cy``."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        values = np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)
        if not np.isfinite(values).all() or self.fx <= 0 or self.fy <= 0:
            raise ConfigError(f"intrinsics must be finite with fx, fy > 0, got {self}")


def intrinsics_from_flags(fx: float | None, fy: float | None, cx: float | None, cy: float | None) -> Intrinsics | None:
    """The intrinsics of ``--fx --fy --cx --cy``: ``None`` when none is given.

    Raises:
        ConfigError: some but not all are given (naming the missing flags), or invalid values.
    """
    given = dict(zip(INTRINSIC_FLAGS, (fx, fy, cx, cy)))
    missing = [f"--{name}" for name, value in given.items() if value is None]
    if len(missing) == len(given):
        return None
    if missing:
        raise ConfigError(f"give all four intrinsics --fx --fy --cx --cy or none; missing: {' '.join(missing)}")
    return Intrinsics(fx, fy, cx, cy)


@dataclass(frozen=True)
class Sample:
    """The input files of one sample, matched by ``stem``; ``mask`` is ``None`` without ``--masks``."""

    stem: str
    rgb: Path
    depth: Path
    mask: Path | None


def _files_by_stem(folder: Path, suffixes: tuple[str, ...], kind: str) -> dict[str, Path]:
    """Visible files of ``folder`` with one of ``suffixes`` (any case), by stem, in name order.

    Raises:
        DataError: ``folder`` is not a folder, holds no such file, or holds two with one stem.
    """
    if not folder.is_dir():
        raise DataError(f"{kind} folder not found: {folder}")
    files: dict[str, Path] = {}
    for path in visible_children(folder):
        if not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        if path.stem in files:
            raise DataError(f"two {kind} files with stem '{path.stem}': {files[path.stem]} and {path}")
        files[path.stem] = path
    if not files:
        raise DataError(f"no {kind} file ({', '.join(suffixes)}) in {folder}")
    return files


def _require_partners(
    files: dict[str, Path], partners: dict[str, Path], kind: str, partner_kind: str, partner_dir: Path
) -> None:
    """Raise a :class:`DataError` naming the stems of ``files`` that have no file in ``partners``."""
    lonely = [stem for stem in files if stem not in partners]
    if not lonely:
        return
    shown = ", ".join(lonely[:_STEMS_SHOWN])
    if len(lonely) > _STEMS_SHOWN:
        shown += f" and {len(lonely) - _STEMS_SHOWN} more"
    raise DataError(
        f"{len(lonely)} {kind} file(s) have no {partner_kind} partner (same stem) in {partner_dir}: {shown}"
    )


def pair_files(rgb_dir: Path, depth_dir: Path, masks_dir: Path | None = None) -> list[Sample]:
    """Match RGB, depth and (optionally) mask files by stem.

    Returns:
        One :class:`Sample` per RGB image, in file-name order.

    Raises:
        DataError: a missing or empty folder, two files with one stem, or a file without its partner.
    """
    rgb = _files_by_stem(Path(rgb_dir), RGB_SUFFIXES, "RGB image")
    depth = _files_by_stem(Path(depth_dir), DEPTH_SUFFIXES, "depth")
    _require_partners(rgb, depth, "RGB image", "depth", Path(depth_dir))
    _require_partners(depth, rgb, "depth", "RGB image", Path(rgb_dir))
    masks: dict[str, Path] = {}
    if masks_dir is not None:
        masks = _files_by_stem(Path(masks_dir), MASK_SUFFIXES, "mask")
        _require_partners(masks, rgb, "mask", "RGB image", Path(rgb_dir))
        _require_partners(rgb, masks, "RGB image", "mask", Path(masks_dir))
    return [Sample(stem, path, depth[stem], masks.get(stem)) for stem, path in rgb.items()]


def backproject(z: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Organised point cloud of a metric depth image with the pinhole model (module docstring).

    Args:
        z: ``(H, W)`` depth in metres, 0 for missing (any float type).
        intrinsics: the camera's intrinsics in pixels.

    Returns:
        ``float32`` ``(H, W, 3)`` in metres; ``(0, 0, 0)`` where ``z == 0`` (the formula gives it).
    """
    if z.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {z.shape}")
    v, u = np.indices(z.shape, dtype=np.float64)  # row, column index
    z = z.astype(np.float64)
    xyz = np.stack([(u - intrinsics.cx) * z / intrinsics.fx, (v - intrinsics.cy) * z / intrinsics.fy, z], axis=-1)
    return xyz.astype(np.float32)


def _read_depth_png(path: Path) -> np.ndarray:
    """``uint16`` ``(H, W)`` raw depth of a 16-bit single-channel PNG."""
    raw = np.fromfile(path, dtype=np.uint8)
    depth = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if depth is None:
        raise DataError(f"depth file cannot be decoded (corrupt or not an image): {path}")
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise DataError(
            f"depth PNG must be 16-bit single-channel (raw depth, not a visualisation), "
            f"found {depth.dtype} with shape {depth.shape}: {path}"
        )
    return depth


def _load_depth_array(path: Path) -> np.ndarray:
    """The raw array of a depth file by suffix: ``(H, W)`` depth or ``(H, W, 3)`` cloud (shape not checked)."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return _read_depth_png(path)
    try:
        array = np.load(path, allow_pickle=False) if suffix == ".npy" else tifffile.imread(path)
    except Exception as exc:  # numpy and tifffile raise many exception types for broken or truncated files
        raise DataError(f"depth file cannot be read (corrupt or truncated {suffix}: {exc}): {path}") from exc
    return array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array


def read_depth_as_xyz(path: str | Path, intrinsics: Intrinsics | None, depth_scale: float) -> np.ndarray:
    """Read one depth file as an organised point cloud (module docstring: depth image or cloud).

    Args:
        path: depth image (``.png``/``.tif``/``.tiff``/``.npy``, ``(H, W)``) or organised cloud (``(H, W, 3)``).
        intrinsics: pinhole intrinsics; needed only when ``path`` holds a depth image.
        depth_scale: metres per depth unit of a depth image.

    Returns:
        ``float32`` ``(H, W, 3)`` in metres, ``(0, 0, 0)`` at missing points.

    Raises:
        DataError: unreadable file, unexpected shape or type, or a depth image while ``intrinsics`` is ``None``.
    """
    path = Path(path)
    array = _load_depth_array(path)
    if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"depth file must hold numbers, found {array.dtype}: {path}")
    if array.ndim == 3 and array.shape[2] == 3:
        if not np.issubdtype(array.dtype, np.floating):
            raise DataError(f"organised point cloud must be float (metres), found {array.dtype}: {path}")
        xyz = array.astype(np.float32)
        valid = np.isfinite(xyz).all(axis=-1) & (xyz[:, :, 2] > 0)
        return np.where(valid[:, :, None], xyz, np.float32(0.0))
    if array.ndim != 2:
        raise DataError(
            f"depth file must be a depth image (H, W) or a point cloud (H, W, 3), found {array.shape}: {path}"
        )
    if intrinsics is None:
        raise DataError(f"{path} is a depth image: back-projecting it needs the intrinsics --fx --fy --cx --cy")
    z = array.astype(np.float64) * depth_scale
    z[~np.isfinite(z) | (z <= 0)] = 0.0
    return backproject(z, intrinsics)


def _check_same_size(rgb: np.ndarray, rgb_path: Path, other: np.ndarray, other_path: Path, kind: str) -> None:
    if rgb.shape[:2] != other.shape[:2]:
        (h, w), (oh, ow) = rgb.shape[:2], other.shape[:2]
        raise DataError(f"size mismatch: RGB image {rgb_path} is {h}×{w} (H×W) but {kind} {other_path} is {oh}×{ow}")


def _read_sample(
    sample: Sample, intrinsics: Intrinsics | None, depth_scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(rgb (H, W, 3) uint8, xyz (H, W, 3) float32, mask (H, W) bool or None)`` of one sample, checked."""
    try:
        rgb = read_rgb(sample.rgb)
        xyz = read_depth_as_xyz(sample.depth, intrinsics, depth_scale)
        mask = None if sample.mask is None else read_mask(sample.mask)
    except OSError as exc:  # permissions, a folder named like a file, I/O errors
        raise DataError(f"cannot read {exc.filename or sample.stem}: {exc.strerror or exc}") from exc
    _check_same_size(rgb, sample.rgb, xyz, sample.depth, "depth")
    if mask is not None:
        _check_same_size(rgb, sample.rgb, mask, sample.mask, "mask")
    if not (xyz[:, :, 2] > 0).any():
        raise DataError(f"no valid depth in {sample.depth}: every pixel is missing (0); check the file")
    return rgb, xyz, mask


def _convert_sample(sample: Sample, staging: Path, intrinsics: Intrinsics | None, depth_scale: float) -> np.ndarray:
    """Write one sample's rgb / xyz (/ gt) under ``staging``; returns its valid z values ``(N,)`` in metres."""
    rgb, xyz, mask = _read_sample(sample, intrinsics, depth_scale)
    write_rgb(staging / "rgb" / f"{sample.stem}.png", rgb)
    write_xyz(staging / "xyz" / f"{sample.stem}.tiff", xyz)
    if mask is not None:
        write_mask(staging / "gt" / f"{sample.stem}.png", mask)
    return xyz[:, :, 2][xyz[:, :, 2] > 0]


def _make_staging(out: Path) -> Path:
    """A new hidden folder in the nearest existing ancestor of ``out`` (so on its file system); no folder is made above.

    Raises:
        DataError: the folder cannot be created.
    """
    anchor = next(folder for folder in out.absolute().parents if folder.is_dir())
    staging = anchor / f".{out.absolute().name}.{uuid.uuid4().hex[:12]}.partial"
    try:
        staging.mkdir()  # not tempfile.mkdtemp: its 0o700 mode would stay with the published folder
    except OSError as exc:
        raise DataError(f"cannot create a folder in {anchor} for {out}: {exc.strerror or exc}") from exc
    return staging


def _publish(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out``, creating its parents (an empty ``out`` is replaced)."""
    if out.is_dir():
        out.rmdir()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out)


def convert_rgbd(
    rgb_dir: str | Path,
    depth_dir: str | Path,
    out: str | Path,
    intrinsics: Intrinsics | None = None,
    depth_scale: float = DEFAULT_DEPTH_SCALE,
    masks_dir: str | Path | None = None,
) -> Path:
    """Convert matched RGB / depth (/ mask) files into ``<out>/{rgb,xyz[,gt]}`` (module docstring).

    Args:
        rgb_dir: folder of RGB images.
        depth_dir: folder of depth images or organised clouds.
        out: new or empty split folder, e.g. ``<root>/<class>/test/<defect>``.
        intrinsics: pinhole intrinsics, needed only if a depth image (not a cloud) is met.
        depth_scale: metres per depth unit (> 0).
        masks_dir: folder of defect masks, or ``None``.

    Returns:
        ``out``.

    Raises:
        ConfigError: ``depth_scale <= 0``.
        DataError: a refusal of the module docstring; nothing is written then (``out`` and its parents are made
            only once every sample is converted).
    """
    out = Path(out)
    if not depth_scale > 0:
        raise ConfigError(f"--depth-scale must be > 0 (metres per depth unit), got {depth_scale}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder exists and is not empty: {out} (choose a new split folder)")
    samples = pair_files(Path(rgb_dir), Path(depth_dir), None if masks_dir is None else Path(masks_dir))
    staging = _make_staging(out)
    low, high = np.inf, -np.inf
    try:
        for sample in samples:
            z = _convert_sample(sample, staging, intrinsics, depth_scale)
            low, high = min(low, float(z.min())), max(high, float(z.max()))
        _publish(staging, out)
    except OSError as exc:
        raise DataError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful rename
    # A z range far from the scene's distance (e.g. 0.0006 m) usually means a wrong --depth-scale.
    LOGGER.info("converted %d samples into %s; valid z from %.4g to %.4g m", len(samples), out, low, high)
    return out
