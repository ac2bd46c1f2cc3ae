"""Parts3D lighting: a distant light that changes per sample, Lambertian shading and cast shadows.

The light's direction and strength are drawn per sample; the part shadows the table and itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.parts3d.raymarch import Surface, occluded
from datasets.parts3d.solid import Solid

__all__ = ["Light", "irradiance"]


@dataclass(frozen=True, eq=False)
class Light:
    """A distant light plus ambient light.

    Attributes:
        direction: unit vector towards the light, world frame ``(3,)``.
        intensity: irradiance of a surface facing the light squarely (1 = nominal).
        ambient: irradiance everywhere, also in shadow.
    """

    direction: np.ndarray
    intensity: float
    ambient: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Light:
        """Elevation 50–70°, azimuth within ±30° of the cell's lamp, intensity 0.75–1.15, ambient 0.15–0.30."""
        elevation, azimuth = np.deg2rad(rng.uniform(50.0, 70.0)), np.deg2rad(rng.uniform(-30.0, 30.0))
        direction = np.array(
            [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
        )
        return cls(direction, float(rng.uniform(0.75, 1.15)), float(rng.uniform(0.15, 0.30)))


def irradiance(light: Light, surface: Surface, solid: Solid) -> np.ndarray:
    """Light reaching each pixel's surface point: ``ambient + intensity · max(0, n·l)`` outside cast shadows.

    Args:
        light: the sample's light.
        surface: what the camera sees, ``(H, W)`` fields.
        solid: the part, casting shadows.

    Returns:
        ``(H, W)`` irradiance (dimensionless, about 0.15–1.45).
    """
    facing = np.clip(surface.normals @ light.direction, 0.0, None)
    lit = facing > 0.0
    points, normals = surface.points[lit], surface.normals[lit]
    towards = np.broadcast_to(light.direction, points.shape)
    shadowed = occluded(solid, points, normals, towards, np.full(len(points), np.inf))
    direct = np.zeros_like(facing)
    direct[lit] = facing[lit] * ~shadowed
    return light.ambient + light.intensity * direct
