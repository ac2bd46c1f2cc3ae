"""Reading and writing the MVTec 3D-AD file formats (DESIGN §4: the interchange layout).

Every sample is three files: an 8-bit RGB PNG, an organised point cloud stored as a float TIFF
of shape H×W×3 in metres with (0, 0, 0) marking a missing point, and (test only) a 0/255 PNG
ground-truth mask. The readers check what they load and raise :class:`DataError` naming the file
and saying what was expected, so a broken file never reaches the model as silent garbage.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import tifffile

from utils.errors import DataError

__all__ = ["read_rgb", "read_xyz", "read_mask", "write_rgb", "write_xyz", "write_mask"]

LOGGER = logging.getLogger(__name__)

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _require_file(path: Path, kind: str) -> None:
    if not path.is_file():
        raise DataError(f"{kind} file not found: {path}")


def _decode_png(path: Path, kind: str) -> np.ndarray:
    """Decode a PNG/JPEG file with OpenCV, keeping its channels and bit depth."""
    _require_file(path, kind)
    raw = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if image is None:
        raise DataError(f"{kind} file cannot be decoded (corrupt or not an image): {path}")
    return image


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an 8-bit colour image.

    Args:
        path: PNG (or any format OpenCV decodes) with 3 channels; a 4th (alpha) channel is dropped, and a
            grey-scale image (one channel, as some MVTec AD classes) gives three equal channels.

    Returns:
        ``uint8`` array ``(H, W, 3)`` in RGB order.

    Raises:
        DataError: missing or undecodable file, not 8-bit, or not 1/3/4 channels.
    """
    path = Path(path)
    image = _decode_png(path, "RGB image")
    if image.dtype != np.uint8:
        raise DataError(f"RGB image must be 8-bit, found {image.dtype}: {path}")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise DataError(f"RGB image must have 3 channels, found {channels}: {path}")
    return np.ascontiguousarray(cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB))


def read_xyz(path: str | Path) -> np.ndarray:
    """Read an organised point cloud.

    Args:
        path: TIFF holding a float32/float64 array ``(H, W, 3)`` in metres; ``(0, 0, 0)`` = missing point.

    Returns:
        ``float32`` array ``(H, W, 3)``.

    Raises:
        DataError: missing, unreadable or truncated file; wrong dtype or shape; NaN or inf values.
    """
    path = Path(path)
    _require_file(path, "xyz point cloud")
    try:
        xyz = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many exception types for broken or truncated files
        raise DataError(f"xyz point cloud cannot be read (corrupt or truncated TIFF: {exc}): {path}") from exc
    if xyz.dtype not in _FLOAT_DTYPES:
        raise DataError(f"xyz point cloud must be float32 or float64, found {xyz.dtype}: {path}")
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise DataError(f"xyz point cloud must have shape (H, W, 3), found {xyz.shape}: {path}")
    if not np.isfinite(xyz).all():
        raise DataError(f"xyz point cloud contains NaN or inf values (use (0, 0, 0) for missing points): {path}")
    return np.ascontiguousarray(xyz, dtype=np.float32)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask stored as a single-channel image.

    Args:
        path: 8-bit (or 16-bit) single-channel PNG; every non-zero pixel counts as defect (MVTec stores 255,
            VisA the defect's id 1, 2, ...).

    Returns:
        ``bool`` array ``(H, W)``.

    Raises:
        DataError: missing or undecodable file, or more than one channel.
    """
    path = Path(path)
    mask = _decode_png(path, "mask")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise DataError(f"mask must have a single channel, found shape {mask.shape}: {path}")
    if mask.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise DataError(f"mask must be 8-bit or 16-bit, found {mask.dtype}: {path}")
    return mask > 0


def _write_encoded(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise DataError(f"PNG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded.tofile(path)


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write an 8-bit RGB image ``(H, W, 3)`` as PNG (deterministic bytes)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    _write_encoded(Path(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a boolean/0-1 mask ``(H, W)`` as a 0/255 single-channel PNG."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {mask.shape}")
    _write_encoded(Path(path), np.where(mask > 0, 255, 0).astype(np.uint8))


def write_xyz(path: str | Path, xyz: np.ndarray, compress: bool = False) -> None:
    """Write an organised point cloud ``(H, W, 3)`` as a float32 TIFF.

    Args:
        path: destination ``.tiff`` file; parent folders are created.
        xyz: point cloud in metres, ``(0, 0, 0)`` for missing points.
        compress: deflate-compress the TIFF (smaller, still read by :func:`read_xyz`); the real
            MVTec 3D-AD files are uncompressed.
    """
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise ValueError(f"xyz must be (H, W, 3), got {xyz.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        path, np.ascontiguousarray(xyz, dtype=np.float32), photometric="rgb", compression="zlib" if compress else None
    )
