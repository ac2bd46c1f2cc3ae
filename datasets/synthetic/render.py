"""Synthetic3D rendering: one scene (camera, table, posed object, light, noise, holes) and its RGB + xyz.

A pinhole camera (focal ``4·S`` px for an ``S×S`` image, principal point at the image centre) looks
down on a slightly tilted table 0.62–0.68 m away; one object stands on it. Each pixel's point lies on
its camera ray: ``z = z_table − height``, ``x = (u − c)·z / f``, ``y = (v − c)·z / f``. Scanner-like
missing points ``(0, 0, 0)`` are sprinkled, denser on steep slopes. A defective sample is the same
scene with :func:`datasets.synthetic.defects.apply_defect`; its mask marks exactly the pixels whose
RGB bytes or xyz values changed, on the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from datasets.synthetic.defects import DEFAULT_DEFECT_SCALE, apply_defect
from datasets.synthetic.shapes import CLASS_LOOKS, CLASS_NAMES

__all__ = ["DEFAULT_POSE_JITTER", "FOCAL_PER_PIXEL", "Scene", "SyntheticSample", "render_sample"]

FOCAL_PER_PIXEL = 4.0
#: Scale of the pose variation: nearly aligned objects (shift ±2.7 mm, rotation ±0.05 rad, size ±1.8 %), so a
#: reconstruction network can learn a class template instead of reproducing arbitrary texture phases.
DEFAULT_POSE_JITTER = 0.15
_MIN_DEFECT_PIXELS = 3
_DEFECT_TRIES = 20


@dataclass
class Scene:
    """Everything shared by the defect-free and the defective render of one sample."""

    focal: float
    u: np.ndarray  # H×W pixel column minus principal point
    v: np.ndarray  # H×W pixel row minus principal point
    world_x: np.ndarray  # H×W metres on the table plane
    world_y: np.ndarray
    table_z: np.ndarray  # H×W table depth in metres
    height: np.ndarray  # H×W object height in metres (defect-free)
    inside: np.ndarray  # H×W bool object footprint
    albedo: np.ndarray  # H×W×3 in [0, 1] (defect-free)
    light: np.ndarray  # (3,) unit vector towards the light, camera frame
    ambient: float
    diffuse: float
    tint: np.ndarray  # (3,)
    rgb_noise: np.ndarray  # H×W×3
    z_noise: np.ndarray  # H×W metres
    holes: np.ndarray  # H×W bool missing points

    @property
    def pitch(self) -> float:
        """Size of one pixel on the table, in metres."""
        return float(self.table_z.mean() / self.focal)


@dataclass
class SyntheticSample:
    """A rendered sample: ``rgb`` uint8 ``(H, W, 3)``, ``xyz`` float32 ``(H, W, 3)``, ``mask`` bool ``(H, W)``."""

    rgb: np.ndarray
    xyz: np.ndarray
    mask: np.ndarray


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1] of shape ``(size, size)`` from a ``cells×cells`` random grid."""
    grid = rng.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0).astype(np.float64)


def _make_scene(clsname: str, size: int, rng: np.random.Generator, pose_jitter: float) -> Scene:
    shape, colour_a, colour_b = CLASS_LOOKS[clsname]
    focal = FOCAL_PER_PIXEL * size
    centre = (size - 1) / 2.0
    v, u = np.mgrid[0:size, 0:size].astype(np.float64) - centre
    z0 = rng.uniform(0.62, 0.68)
    tilt = rng.uniform(-0.02, 0.02, size=2)
    world_x, world_y = u * z0 / focal, v * z0 / focal
    table_z = z0 + tilt[0] * world_x + tilt[1] * world_y
    shift = rng.uniform(-0.018, 0.018, size=2)
    angle = rng.uniform(-0.35, 0.35)
    scale = rng.uniform(0.88, 1.12)
    if pose_jitter != 1.0:  # shrink the drawn pose towards the aligned one (the draws above stay the same)
        shift, angle, scale = shift * pose_jitter, angle * pose_jitter, 1.0 + (scale - 1.0) * pose_jitter
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    dx, dy = world_x - shift[0], world_y - shift[1]
    p, q = (cos_a * dx + sin_a * dy) / scale, (-sin_a * dx + cos_a * dy) / scale
    height, inside, pattern = shape(p, q)
    height = height * scale
    jitter = rng.uniform(0.92, 1.06, size=(2, 3))
    col_a, col_b = np.clip(np.array(colour_a) * jitter[0], 0, 1), np.clip(np.array(colour_b) * jitter[1], 0, 1)
    fine = _value_noise(rng, size, max(4, size // 4))
    object_albedo = (col_a + (col_b - col_a) * pattern[..., None]) * (0.92 + 0.08 * fine[..., None])
    table_colour = rng.uniform(0.42, 0.48) * np.array([1.0, 0.96, 0.9]) * rng.uniform(0.95, 1.05, size=3)
    table_albedo = table_colour * (0.85 + 0.15 * _value_noise(rng, size, 6)[..., None])
    albedo = np.where(inside[..., None], object_albedo, table_albedo)
    azimuth, elevation = rng.uniform(np.radians(200), np.radians(250)), rng.uniform(np.radians(50), np.radians(70))
    light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), -np.sin(elevation)])
    slope = np.hypot(*np.gradient(height, z0 / focal))
    holes = rng.random((size, size)) < np.where(slope > 3.0, 0.3, 0.004)
    return Scene(
        focal=focal,
        u=u,
        v=v,
        world_x=world_x,
        world_y=world_y,
        table_z=table_z,
        height=height,
        inside=inside,
        albedo=albedo,
        light=light,
        ambient=rng.uniform(0.3, 0.34),
        diffuse=rng.uniform(0.72, 0.78),
        tint=rng.uniform(0.98, 1.02, size=3),
        rgb_noise=rng.normal(0.0, 0.01, size=(size, size, 3)),
        z_noise=rng.normal(0.0, 0.0002, size=(size, size)),
        holes=holes,
    )


def _render(scene: Scene, height: np.ndarray, albedo: np.ndarray, shade_height: np.ndarray) -> tuple[np.ndarray, ...]:
    """RGB (Lambertian, shaded from ``shade_height``) and xyz of a height field. Returns (rgb uint8, xyz float32)."""
    shade_z = scene.table_z - shade_height
    dz_dy, dz_dx = np.gradient(shade_z, scene.pitch)
    cosine = (dz_dx * scene.light[0] + dz_dy * scene.light[1] - scene.light[2]) / np.sqrt(dz_dx**2 + dz_dy**2 + 1)
    radiance = scene.ambient + scene.diffuse * np.maximum(cosine, 0.0)
    colour = albedo * radiance[..., None] * scene.tint + scene.rgb_noise
    rgb = np.clip(np.round(colour * 255.0), 0, 255).astype(np.uint8)
    z = scene.table_z - height + scene.z_noise
    xyz = np.stack([scene.u * z / scene.focal, scene.v * z / scene.focal, z], axis=-1).astype(np.float32)
    xyz[scene.holes] = 0.0
    return rgb, xyz


def render_sample(
    clsname: str,
    size: int,
    rng: np.random.Generator,
    defect: str | None = None,
    pose_jitter: float = DEFAULT_POSE_JITTER,
    defect_scale: float = DEFAULT_DEFECT_SCALE,
) -> dict:
    """Render one sample, and its defective version when ``defect`` is given.

    Args:
        clsname: one of :data:`CLASS_NAMES`.
        size: image side ``S`` in pixels.
        rng: random generator (consumed).
        defect: one of :data:`DEFECT_TYPES`, or None for a defect-free sample only.
        pose_jitter: scale of the pose variation (shift ±18 mm, rotation ±0.35 rad, size ±12 % at 1;
            0 = every object in the same pose).
        defect_scale: size factor of the defect (blob radius 9-14 mm, crack width 2.4 mm at 1).

    Returns:
        ``{"good": SyntheticSample}`` plus ``"defect": SyntheticSample`` when ``defect`` is given; the good
        sample's mask is all False, the defective one's marks exactly the changed pixels ``(S, S)``.
    """
    if clsname not in CLASS_LOOKS:
        raise ValueError(f"unknown synthetic class {clsname!r}; valid: {CLASS_NAMES}")
    scene = _make_scene(clsname, size, rng, pose_jitter)
    rgb, xyz = _render(scene, scene.height, scene.albedo, scene.height)
    result = {"good": SyntheticSample(rgb, xyz, np.zeros((size, size), dtype=bool))}
    if defect is None:
        return result
    for _ in range(_DEFECT_TRIES):
        d_rgb, d_xyz = _render(scene, *apply_defect(scene, defect, rng, defect_scale))
        changed = (d_rgb != rgb).any(axis=-1) | (d_xyz != xyz).any(axis=-1)
        mask = changed & scene.inside
        if mask.sum() >= _MIN_DEFECT_PIXELS:
            result["defect"] = SyntheticSample(d_rgb, d_xyz, mask)
            return result
    raise RuntimeError(f"could not place a visible {defect} on a {clsname} of size {size} in {_DEFECT_TRIES} tries")
