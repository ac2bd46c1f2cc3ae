"""The Parts3D structured-light scanner: what the camera + projector pair measures of a surface.

A point is measured along its camera ray, so the cloud stays organised. Relative to the true surface:

* depth noise along the ray, ``σ = 0.06 mm · (range / 0.40 m)² / cos(incidence)`` (triangulation error grows
  with the square of the distance and at grazing incidence), capped at 0.25 mm and clipped at 3σ;
* missing points ``(0, 0, 0)`` where the projector cannot light the point (occlusion shadow of the part or a
  back-facing surface), on steep slopes (incidence beyond ~73°, certainly beyond ~84°) and where the pattern
  comes back too dark (near-infrared reflectance × projector incidence below ~0.10);
* a few outliers (0.15 % of the measured points) pulled 3–20 mm towards the camera.

The projector works in the near infrared: it sees a surface's material (its reflectance), not paint-like
changes that only show in visible light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.parts3d.raymarch import Surface, occluded
from datasets.parts3d.rig import Rig
from datasets.parts3d.solid import Solid

__all__ = ["ScanNoise", "Scan", "measure"]

_SIGMA_REFERENCE = 6e-5  # metres at the reference range, square incidence
_RANGE_REFERENCE = 0.40
_SIGMA_MAX = 2.5e-4
_CLIP_SIGMAS = 3.0
_SLOPE_LIMITS = (0.10, 0.30)  # cos(incidence): always missing below the first, never above the second
_DARK_LIMITS = (0.04, 0.10)  # returned pattern signal: always missing below the first, never above the second
_OUTLIER_RATE = 0.0015
_OUTLIER_PULL = (0.003, 0.020)  # metres towards the camera


@dataclass(frozen=True, eq=False)
class ScanNoise:
    """The random draws of one scan, ``(H, W)`` each, so that two scans of the same sample share them.

    Attributes:
        depth: standard normal, scaled to the depth error.
        dropout: uniform in ``[0, 1)``, compared with the probability that a point is missing.
        outlier: uniform in ``[0, 1)``, below the outlier rate = outlier.
        pull: uniform in ``[0, 1)``, how far an outlier is pulled.
    """

    depth: np.ndarray
    dropout: np.ndarray
    outlier: np.ndarray
    pull: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> ScanNoise:
        """Fresh draws for a ``size × size`` scan."""
        shape = (size, size)
        return cls(rng.standard_normal(shape), rng.random(shape), rng.random(shape), rng.random(shape))


@dataclass(frozen=True, eq=False)
class Scan:
    """A measured point cloud: ``xyz`` float32 ``(H, W, 3)`` camera frame, metres; ``valid`` bool ``(H, W)``."""

    xyz: np.ndarray
    valid: np.ndarray


def _ramp(value: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """1 below ``limits[0]``, 0 above ``limits[1]``, linear between."""
    return np.clip((limits[1] - value) / (limits[1] - limits[0]), 0.0, 1.0)


def _projector_view(rig: Rig, surface: Surface, solid: Solid) -> tuple[np.ndarray, np.ndarray]:
    """``(cos of the projector's incidence, lit by the projector)``, ``(H, W)`` each."""
    towards = rig.projector - surface.points
    distance = np.linalg.norm(towards, axis=-1)
    towards = towards / distance[..., None]
    cos_projector = np.einsum("hwc,hwc->hw", surface.normals, towards)
    lit = cos_projector > 0.0
    lit[lit] = ~occluded(solid, surface.points[lit], surface.normals[lit], towards[lit], distance[lit])
    return cos_projector, lit


def measure(
    rig: Rig, surface: Surface, solid: Solid, reflectance: np.ndarray, noise: ScanNoise, sink: np.ndarray
) -> Scan:
    """Scan what the camera sees.

    Args:
        rig: the cell.
        surface: the surface seen by each pixel, ``(H, W)`` fields.
        solid: the part (casts the projector's shadows).
        reflectance: ``(H, W)`` near-infrared reflectance in ``[0, 1]``.
        noise: the scan's random draws.
        sink: ``(H, W)`` metres the true surface lies further along each ray than ``surface`` (a deformation).

    Returns:
        The measured cloud.
    """
    cos_camera = -np.einsum("hwc,hwc->hw", surface.normals, surface.rays)
    cos_projector, lit = _projector_view(rig, surface, solid)
    incidence = np.minimum(cos_camera, cos_projector)
    ranges = surface.ranges + sink
    sigma = np.minimum(_SIGMA_REFERENCE * (ranges / _RANGE_REFERENCE) ** 2 / np.maximum(incidence, 0.1), _SIGMA_MAX)
    error = sigma * np.clip(noise.depth, -_CLIP_SIGMAS, _CLIP_SIGMAS)
    missing = np.maximum(_ramp(incidence, _SLOPE_LIMITS), _ramp(reflectance * cos_projector, _DARK_LIMITS))
    valid = lit & (noise.dropout >= missing)
    pulled = valid & (noise.outlier < _OUTLIER_RATE)
    pull = np.where(pulled, _OUTLIER_PULL[0] + (_OUTLIER_PULL[1] - _OUTLIER_PULL[0]) * noise.pull, 0.0)
    xyz = rig.ray_directions() * (ranges + error - pull)[..., None]
    return Scan(np.where(valid[..., None], xyz, 0.0).astype(np.float32), valid)
