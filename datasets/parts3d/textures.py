"""Photo textures for Parts3D: real photographs bundled with scikit-image, tinted per class.

The grey photographs ``brick``, ``grass`` and ``gravel`` ship inside the scikit-image wheel (no download);
each becomes a zero-mean, unit-variance detail map that modulates a :class:`Finish`'s tint. Surfaces look
the photo up at texture coordinates in metres (:data:`~datasets.parts3d.objects.SurfaceCoordinates`),
bilinearly, tiled with mirrored copies so that no seam shows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from datasets.parts3d.objects import SurfaceCoordinates

__all__ = ["PHOTOS", "CLASS_FINISHES", "TABLE_FINISH", "Finish", "photo"]

#: The scikit-image sample photographs used (all bundled in its wheel).
PHOTOS = ("brick", "grass", "gravel")
_SMOOTHING = 1.0  # Gaussian sigma in photo pixels, against aliasing when a pixel spans several texels


@functools.lru_cache(maxsize=len(PHOTOS))
def photo(name: str) -> np.ndarray:
    """A bundled photograph as a read-only float32 detail map ``(512, 512)``: zero mean, unit variance.

    Raises:
        ValueError: ``name`` is not one of :data:`PHOTOS`.
        ImportError: scikit-image is not installed (``pip install -r requirements-dev.txt``).
    """
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; expected one of {PHOTOS}")
    try:
        import skimage.data
    except ImportError as exc:
        raise ImportError(
            "the Parts3D generator textures its parts with scikit-image's sample photographs: "
            "pip install -r requirements-dev.txt"
        ) from exc
    image = cv2.GaussianBlur(getattr(skimage.data, name)().astype(np.float32), (0, 0), _SMOOTHING)
    detail = (image - image.mean()) / image.std()
    detail.setflags(write=False)
    return detail


def _mirrored(index: np.ndarray, length: int) -> np.ndarray:
    """Integer positions folded into ``0..length-1`` by mirrored tiling (seamless for any photo)."""
    folded = index % (2 * length)
    return np.where(folded < length, folded, 2 * length - 1 - folded)


def _sample_tiled(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``image`` ``(h, w)`` at fractional ``(rows, cols)`` ``(N,)``, tiled with mirrored copies."""
    height, width = image.shape
    top, left = np.floor(rows), np.floor(cols)
    down, right = rows - top, cols - left
    top, left = top.astype(np.int64), left.astype(np.int64)
    r0, r1 = _mirrored(top, height), _mirrored(top + 1, height)
    c0, c1 = _mirrored(left, width), _mirrored(left + 1, width)
    upper = image[r0, c0] * (1.0 - right) + image[r0, c1] * right
    lower = image[r1, c0] * (1.0 - right) + image[r1, c1] * right
    return upper * (1.0 - down) + lower * down


@dataclass(frozen=True)
class Finish:
    """A surface material: a photo's detail on a tint.

    Attributes:
        photo: one of :data:`PHOTOS`.
        tint: mean RGB reflectance in ``[0, 1]``.
        contrast: how strongly the photo's detail (unit variance) modulates the tint.
        texels_per_metre: photo pixels per metre of surface.
    """

    photo: str
    tint: tuple[float, float, float]
    contrast: float
    texels_per_metre: float

    def albedo(self, coordinates: SurfaceCoordinates, offset: tuple[float, float]) -> np.ndarray:
        """RGB reflectance ``(N, 3)`` in ``[0, 1]`` at texture coordinates; ``offset`` shifts the photo, in texels."""
        detail = photo(self.photo)
        value = sum(
            weight * _sample_tiled(detail, v * self.texels_per_metre + offset[0], u * self.texels_per_metre + offset[1])
            for u, v, weight in coordinates
        )
        modulation = np.clip(1.0 + self.contrast * value, 0.2, 1.8)
        return np.clip(modulation[:, None] * np.asarray(self.tint), 0.0, 1.0)


#: Each class's material (the keys are :data:`~datasets.parts3d.objects.CLASS_NAMES`).
CLASS_FINISHES: dict[str, Finish] = {
    "bolt": Finish("gravel", (0.60, 0.62, 0.66), 0.22, 4000.0),  # zinc-plated steel
    "bracket": Finish("brick", (0.82, 0.40, 0.18), 0.40, 2200.0),  # orange powder coat
    "gear": Finish("grass", (0.80, 0.63, 0.28), 0.32, 4500.0),  # brass
    "pebble": Finish("gravel", (0.72, 0.64, 0.54), 0.45, 2600.0),  # sandstone
    "perforated_disc": Finish("brick", (0.24, 0.52, 0.58), 0.30, 3500.0),  # teal anodised
    "tube": Finish("grass", (0.70, 0.40, 0.26), 0.38, 3200.0),  # copper
}
#: The table the parts stand on: dark grey, faint grain.
TABLE_FINISH = Finish("gravel", (0.30, 0.31, 0.33), 0.18, 1500.0)
