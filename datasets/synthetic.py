"""Synthetic3D: a small RGB + organised-point-cloud anomaly dataset in the MVTec 3D-AD layout (DESIGN §2, §4).

The embedded default dataset: it lets the whole pipeline (meta, loaders, incremental steps,
metrics) run anywhere in seconds, and its defects are built so that each modality matters:

* ``color_stain`` changes RGB only (geometry untouched);
* ``dent`` and ``bump`` change the geometry only; RGB is shaded from the undeformed surface, so
  they are invisible in RGB;
* ``crack`` and ``contamination`` (a small foreign blob of another colour) change both.

Scene: a pinhole camera (focal ``4·S`` px for an ``S×S`` image, principal point at the image centre)
looks down on a slightly tilted table 0.62–0.68 m away; one object stands on it. Objects are height
fields over the table in object coordinates, so pose (shift, rotation, scale), colours and
lighting vary per sample while the shape and texture stay those of the class. Each pixel's point
lies on its camera ray: ``z = z_table − height``, ``x = (u − c)·z / f``, ``y = (v − c)·z / f``.
Scanner-like missing points ``(0, 0, 0)`` are sprinkled, denser on steep slopes.

Masks mark exactly the pixels where the defective sample's RGB bytes or xyz values differ from
the defect-free render of the same sample (same pose, light, noise and holes), restricted to the
object; defects are confined to the object eroded by 1 px, so their shading changes stay on it too.

Everything derives from ``numpy.random.default_rng([seed, class index, split, sample index])``:
the same arguments give the same bytes, and one class's samples do not depend on which other
classes are generated. Class names sort into the incremental order (see :data:`CLASS_NAMES`).
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datasets.io import write_mask, write_rgb, write_xyz
from utils.errors import ConfigError, DataError

__all__ = [
    "CLASS_NAMES",
    "DEFECT_TYPES",
    "DEFAULT_POSE_JITTER",
    "SyntheticSample",
    "render_sample",
    "make_dataset",
    "ensure_dataset",
]

LOGGER = logging.getLogger(__name__)

#: Sorted = incremental order. In the 6-4 setting the base step is ball … pyramid and the increment ring, star,
#: washer, wave; the round look-alikes (ball | ring, bowl | washer) fall on both sides of that cut.
CLASS_NAMES = ("ball", "bowl", "box", "capsule", "cone", "pyramid", "ring", "star", "washer", "wave")
DEFECT_TYPES = ("bump", "color_stain", "contamination", "crack", "dent")

FOCAL_PER_PIXEL = 4.0
#: Default scale of the pose variation: nearly aligned objects (shift ±2.7 mm, rotation ±0.05 rad, size ±1.8 %).
#: With random backbone features a reconstruction network learns a class template only when the object stays
#: put; at 1 it must reproduce arbitrary texture phases and learns to copy (README "Results on Synthetic3D").
DEFAULT_POSE_JITTER = 0.15
#: Default size factor of the defects: blob radius 18-28 mm (2 × the 9-14 mm of older versions) on objects 30-90 mm
#: wide, cracks 4.8 mm wide. At 1 a defect fills about one 16-px token of the 128-px default, too little for random
#: backbone features to tell (README "Results on Synthetic3D").
DEFAULT_DEFECT_SCALE = 2.0
#: Arguments of datasets written before an option existed (their ``synthetic3d.json`` lacks the key).
_LEGACY_INFO = {"pose_jitter": 1.0, "defect_scale": 1.0}
MIN_SIZE = 32
_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
_MIN_DEFECT_PIXELS = 3
_DEFECT_TRIES = 20
_STAIN_COLOURS = np.array([[0.30, 0.18, 0.06], [0.08, 0.08, 0.10], [0.65, 0.10, 0.55], [0.10, 0.45, 0.15]])
_CONTAMINANT_COLOURS = np.array([[0.12, 0.12, 0.12], [0.92, 0.92, 0.88], [0.35, 0.65, 0.10], [0.15, 0.20, 0.75]])

Shape = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


# --- class shapes: (p, q) object coordinates in metres -> (height m, inside bool, pattern in [0, 1]) ---------------


def _ball(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    radius, cell = 0.036, 0.012
    r2 = p * p + q * q
    inside = r2 < radius**2
    height = np.where(inside, radius + np.sqrt(np.maximum(radius**2 - r2, 0.0)), 0.0)
    dp, dq = np.mod(p, cell) - cell / 2, np.mod(q, cell) - cell / 2
    return height, inside, (dp * dp + dq * dq < 0.0035**2).astype(float)


def _bowl(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    outer, inner, rim_height, floor = 0.045, 0.037, 0.028, 0.006
    r = np.hypot(p, q)
    basin = floor + (rim_height - floor) * (r / inner) ** 2
    rim = rim_height * np.sqrt(np.clip(1.0 - ((r - inner) / (outer - inner)) ** 2, 0.0, 1.0))
    inside = r < outer
    height = np.where(r < inner, basin, np.where(inside, rim, 0.0))
    return height, inside, (np.sin(2 * np.pi * r / 0.01) > 0).astype(float)


def _box(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half_p, half_q, top, bevel = 0.040, 0.027, 0.030, 0.004
    edge = np.minimum(half_p - np.abs(p), half_q - np.abs(q))
    inside = edge > 0
    height = np.where(inside, top * np.sqrt(np.clip(edge / bevel, 0.0, 1.0)), 0.0)
    checker = (np.floor(p / 0.01) + np.floor(q / 0.01)) % 2
    return height, inside, checker


def _capsule(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half_length, radius = 0.028, 0.016
    d2 = np.maximum(np.abs(p) - half_length, 0.0) ** 2 + q * q
    inside = d2 < radius**2
    height = np.where(inside, radius + np.sqrt(np.maximum(radius**2 - d2, 0.0)), 0.0)
    return height, inside, (p > 0).astype(float)


def _cone(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    radius, top = 0.042, 0.045
    r = np.hypot(p, q)
    inside = r < radius
    height = np.where(inside, top * (1.0 - r / radius), 0.0)
    sectors = np.floor((np.arctan2(q, p) + np.pi) / (np.pi / 4)) % 2
    return height, inside, sectors


def _pyramid(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half, top, pitch, line = 0.038, 0.040, 0.009, 0.0018
    m = np.maximum(np.abs(p), np.abs(q))
    inside = m < half
    height = np.where(inside, top * (1.0 - m / half), 0.0)
    grid = (np.mod(p, pitch) < line) | (np.mod(q, pitch) < line)
    return height, inside, grid.astype(float)


def _ring(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    major, minor = 0.030, 0.011
    d2 = (np.hypot(p, q) - major) ** 2
    inside = d2 < minor**2
    height = np.where(inside, minor + np.sqrt(np.maximum(minor**2 - d2, 0.0)), 0.0)
    return height, inside, (np.sin(12 * np.arctan2(q, p)) > 0).astype(float)


def _star(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    outer, inner, prism, apex = 0.046, 0.022, 0.010, 0.014
    period = 2 * np.pi / 5
    t = np.mod(np.arctan2(q, p), period) / period
    star_radius = inner + (outer - inner) * np.abs(2 * t - 1)
    r = np.hypot(p, q)
    inside = r < star_radius
    height = np.where(inside, prism + apex * (1.0 - r / star_radius), 0.0)
    return height, inside, np.clip(r / star_radius, 0.0, 1.0)


def _washer(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    outer, hole, thickness, round_off, bolt_radius = 0.042, 0.016, 0.008, 0.003, 0.029
    r = np.hypot(p, q)
    edge = np.minimum(r - hole, outer - r)
    inside = edge > 0
    height = np.where(inside, thickness * np.sqrt(np.clip(edge / round_off, 0.0, 1.0)), 0.0)
    nearest = np.round(np.arctan2(q, p) / (np.pi / 3)) * (np.pi / 3)
    dots = (p - bolt_radius * np.cos(nearest)) ** 2 + (q - bolt_radius * np.sin(nearest)) ** 2 < 0.0045**2
    return height, inside, dots.astype(float)


def _wave(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half, base, amplitude = 0.042, 0.014, 0.007
    inside = np.maximum(np.abs(p), np.abs(q)) < half
    surface = base + amplitude * np.sin(2 * np.pi * p / 0.028) * np.cos(2 * np.pi * q / 0.034)
    height = np.where(inside, surface, 0.0)
    return height, inside, np.floor(surface / 0.0035) % 2


#: class -> (shape, colour where pattern = 0, colour where pattern = 1)
_CLASSES: dict[str, tuple[Shape, tuple[float, float, float], tuple[float, float, float]]] = {
    "ball": (_ball, (0.85, 0.20, 0.15), (0.95, 0.93, 0.88)),
    "bowl": (_bowl, (0.20, 0.35, 0.80), (0.60, 0.75, 0.95)),
    "box": (_box, (0.72, 0.56, 0.35), (0.45, 0.30, 0.15)),
    "capsule": (_capsule, (0.95, 0.85, 0.20), (0.50, 0.20, 0.60)),
    "cone": (_cone, (0.95, 0.55, 0.10), (0.97, 0.97, 0.95)),
    "pyramid": (_pyramid, (0.85, 0.75, 0.50), (0.30, 0.30, 0.30)),
    "ring": (_ring, (0.20, 0.70, 0.30), (0.08, 0.38, 0.15)),
    "star": (_star, (0.97, 0.82, 0.30), (0.80, 0.25, 0.20)),
    "washer": (_washer, (0.66, 0.68, 0.71), (0.30, 0.31, 0.34)),
    "wave": (_wave, (0.10, 0.58, 0.60), (0.82, 0.90, 0.85)),
}
assert tuple(sorted(_CLASSES)) == CLASS_NAMES


# --- one sample ----------------------------------------------------------------------------------------------------


@dataclass
class _Scene:
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


def _make_scene(clsname: str, size: int, rng: np.random.Generator, pose_jitter: float) -> _Scene:
    shape, colour_a, colour_b = _CLASSES[clsname]
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
    if pose_jitter != 1.0:  # shrink the drawn pose towards the aligned one (pose_jitter 1 keeps the old bytes)
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
    return _Scene(
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


def _render(scene: _Scene, height: np.ndarray, albedo: np.ndarray, shade_height: np.ndarray) -> tuple[np.ndarray, ...]:
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


def _blob(scene: _Scene, centre: tuple[int, int], radius: float, rng: np.random.Generator) -> np.ndarray:
    """Relative distance ``d / r(angle)`` to a wobbly blob outline around a pixel (< 1 inside). Shape (H, W)."""
    dx = scene.world_x - scene.world_x[centre]
    dy = scene.world_y - scene.world_y[centre]
    angle = np.arctan2(dy, dx)
    wobble = rng.uniform(0.0, 0.25, size=2)
    phase = rng.uniform(0.0, 2 * np.pi, size=2)
    outline = radius * (1 + wobble[0] * np.sin(3 * angle + phase[0]) + wobble[1] * np.sin(5 * angle + phase[1]))
    return np.hypot(dx, dy) / outline


def _crack_distance(scene: _Scene, centre: tuple[int, int], length: float, rng: np.random.Generator) -> np.ndarray:
    """Distance in metres from every pixel to a random 4-segment polyline starting at ``centre``. Shape (H, W)."""
    point = np.array([scene.world_x[centre], scene.world_y[centre]])
    direction = rng.uniform(0.0, 2 * np.pi)
    distance = np.full(scene.world_x.shape, np.inf)
    for _ in range(4):
        direction += rng.uniform(-0.7, 0.7)
        end = point + length / 4 * rng.uniform(0.8, 1.2) * np.array([np.cos(direction), np.sin(direction)])
        seg = end - point
        t = np.clip(((scene.world_x - point[0]) * seg[0] + (scene.world_y - point[1]) * seg[1]) / (seg @ seg), 0, 1)
        distance = np.minimum(
            distance, np.hypot(scene.world_x - point[0] - t * seg[0], scene.world_y - point[1] - t * seg[1])
        )
        point = end
    return distance


def _apply_defect(
    scene: _Scene, kind: str, rng: np.random.Generator, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Defective (height, albedo, shading height) of a scene; changes are confined to the eroded footprint.

    ``scale`` multiplies the radius of the blob defects (9-14 mm at 1) and the width of a crack (2.4 mm at 1; its
    length, 4 radii at scale 1, already spans most objects); depths and colours stay.
    """
    # Shading uses central differences: a change at one pixel alters its 4 neighbours, which stay on the object.
    safe = cv2.erode(scene.inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    candidates = np.argwhere(safe) if safe.any() else np.argwhere(scene.inside)
    centre = tuple(candidates[rng.integers(len(candidates))])
    min_radius = 2.0 * scene.pitch  # keeps defects a few pixels wide at small image sizes
    unscaled_radius = rng.uniform(0.009, 0.014)
    radius = max(unscaled_radius * scale, min_radius)
    height, albedo = scene.height.copy(), scene.albedo.copy()
    if kind in ("dent", "bump"):
        rel = np.hypot(scene.world_x - scene.world_x[centre], scene.world_y - scene.world_y[centre]) / radius
        profile = np.where(rel < 1, 0.5 * (1 + np.cos(np.pi * np.minimum(rel, 1))), 0.0)
        sign = -1.0 if kind == "dent" else 1.0
        height += sign * rng.uniform(0.004, 0.007) * profile * safe
        return height, albedo, scene.height
    if kind == "color_stain":
        stain = (_blob(scene, centre, max(radius * 0.8, min_radius), rng) < 1) & safe
        alpha = rng.uniform(0.6, 0.85)
        colour = _STAIN_COLOURS[rng.integers(len(_STAIN_COLOURS))]
        albedo[stain] = (1 - alpha) * albedo[stain] + alpha * colour
        return height, albedo, scene.height
    if kind == "crack":
        half_width = max(0.0012 * scale, 0.9 * scene.pitch)
        distance = _crack_distance(scene, centre, 4 * max(unscaled_radius, min_radius), rng)
        groove = np.where(distance < half_width, 1.0 - distance / half_width, 0.0) * safe
        height -= rng.uniform(0.002, 0.004) * groove
        albedo[groove > 0] *= 0.35
        return height, albedo, height
    if kind == "contamination":
        rel = _blob(scene, centre, max(radius * rng.uniform(0.55, 0.8), min_radius), rng)
        blob = (rel < 1) & safe
        height += rng.uniform(0.002, 0.004) * np.sqrt(np.clip(1 - rel**2, 0.0, 1.0)) * blob
        colour = _CONTAMINANT_COLOURS[rng.integers(len(_CONTAMINANT_COLOURS))]
        albedo[blob] = colour * rng.uniform(0.85, 1.0, size=(int(blob.sum()), 1))
        return height, albedo, height
    raise ValueError(f"unknown defect type {kind!r}; valid: {DEFECT_TYPES}")


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
    if clsname not in _CLASSES:
        raise ValueError(f"unknown synthetic class {clsname!r}; valid: {CLASS_NAMES}")
    scene = _make_scene(clsname, size, rng, pose_jitter)
    rgb, xyz = _render(scene, scene.height, scene.albedo, scene.height)
    result = {"good": SyntheticSample(rgb, xyz, np.zeros((size, size), dtype=bool))}
    if defect is None:
        return result
    for _ in range(_DEFECT_TRIES):
        d_rgb, d_xyz = _render(scene, *_apply_defect(scene, defect, rng, defect_scale))
        changed = (d_rgb != rgb).any(axis=-1) | (d_xyz != xyz).any(axis=-1)
        mask = changed & scene.inside
        if mask.sum() >= _MIN_DEFECT_PIXELS:
            result["defect"] = SyntheticSample(d_rgb, d_xyz, mask)
            return result
    raise RuntimeError(f"could not place a visible {defect} on a {clsname} of size {size} in {_DEFECT_TRIES} tries")


# --- dataset -------------------------------------------------------------------------------------------------------


def _test_plan(class_index: int, count: int) -> list[str]:
    """Label of each test sample: about a third good, the rest spread over the defect types (rotated per class)."""
    good = max(1, round(count / 3))
    order = DEFECT_TYPES[class_index % len(DEFECT_TYPES) :] + DEFECT_TYPES[: class_index % len(DEFECT_TYPES)]
    return ["good"] * good + [order[i % len(order)] for i in range(count - good)]


def _write_sample(folder: Path, stem: str, sample: SyntheticSample, with_gt: bool, compress: bool) -> None:
    write_rgb(folder / "rgb" / f"{stem}.png", sample.rgb)
    write_xyz(folder / "xyz" / f"{stem}.tiff", sample.xyz, compress=compress)
    if with_gt:
        write_mask(folder / "gt" / f"{stem}.png", sample.mask)


def _validate(size: int, train_per_class: int, test_per_class: int, classes: Sequence[str]) -> None:
    if size < MIN_SIZE:
        raise ConfigError(f"size must be >= {MIN_SIZE}, got {size}")
    if train_per_class < 1:
        raise ConfigError(f"train_per_class must be >= 1, got {train_per_class}")
    if test_per_class < 2:
        raise ConfigError(f"test_per_class must be >= 2 (one good and one defective), got {test_per_class}")
    unknown = sorted(set(classes) - set(CLASS_NAMES))
    if unknown:
        raise ConfigError(f"unknown synthetic class(es) {unknown}; valid: {list(CLASS_NAMES)}")


def make_dataset(
    out: str | Path,
    size: int = 128,
    train_per_class: int = 30,
    test_per_class: int = 30,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    compress: bool = False,
    pose_jitter: float = DEFAULT_POSE_JITTER,
    defect_scale: float = DEFAULT_DEFECT_SCALE,
) -> Path:
    """Write a Synthetic3D dataset in the MVTec 3D-AD layout.

    ``<out>/<class>/{train,validation}/good/{rgb,xyz}``, ``<out>/<class>/test/<good|defect>/{rgb,xyz,gt}``
    and ``<out>/synthetic3d.json`` (the generation arguments). Validation holds ``max(2, round(0.1 · train))``
    samples per class.

    Args:
        out: new or empty folder.
        size: image side in pixels (≥ 32).
        train_per_class: training images per class.
        test_per_class: test images per class (about a third good).
        seed: generation seed.
        classes: subset of :data:`CLASS_NAMES` (default all); a class's samples do not depend on the others.
        compress: deflate-compress the xyz TIFFs.
        pose_jitter: scale of the per-sample pose variation (see :func:`render_sample`).
        defect_scale: size factor of the defects (see :func:`render_sample`).

    Returns:
        The dataset root.

    Raises:
        ConfigError: invalid arguments. DataError: ``out`` exists and is not empty.
    """
    classes = list(CLASS_NAMES if classes is None else classes)
    _validate(size, train_per_class, test_per_class, classes)
    if not 0.0 <= pose_jitter <= 1.0:
        raise ConfigError(f"pose_jitter must be in 0..1, got {pose_jitter}")
    if not 0.0 < defect_scale <= 3.0:
        raise ConfigError(f"defect_scale must be in (0, 3], got {defect_scale}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder exists and is not empty: {out} (choose a new folder)")
    out.mkdir(parents=True, exist_ok=True)
    info = _generation_info(size, train_per_class, test_per_class, seed, classes, compress, pose_jitter, defect_scale)
    val_count = info["validation_per_class"]
    for clsname in classes:
        class_index = CLASS_NAMES.index(clsname)
        for split, count in (("train", train_per_class), ("validation", val_count)):
            for index in range(count):
                rng = np.random.default_rng([seed, class_index, _SPLIT_CODES[split], index])
                good = render_sample(clsname, size, rng, pose_jitter=pose_jitter)["good"]
                _write_sample(out / clsname / split / "good", f"{index:03d}", good, False, compress)
        counters: dict[str, int] = {}
        for index, label in enumerate(_test_plan(class_index, test_per_class)):
            rng = np.random.default_rng([seed, class_index, _SPLIT_CODES["test"], index])
            defect = None if label == "good" else label
            rendered = render_sample(clsname, size, rng, defect, pose_jitter, defect_scale)
            stem = f"{counters.setdefault(label, 0):03d}"
            counters[label] += 1
            sample = rendered["good"] if label == "good" else rendered["defect"]
            _write_sample(out / clsname / "test" / label, stem, sample, True, compress)
        LOGGER.info("synthetic class %s written", clsname)
    (out / "synthetic3d.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def _generation_info(
    size: int,
    train_per_class: int,
    test_per_class: int,
    seed: int,
    classes: Sequence[str],
    compress: bool,
    pose_jitter: float,
    defect_scale: float,
) -> dict:
    """The generation arguments as recorded in ``<out>/synthetic3d.json``."""
    return {
        "generator": "datasets.synthetic",
        "size": size,
        "train_per_class": train_per_class,
        "validation_per_class": max(2, round(0.1 * train_per_class)),
        "test_per_class": test_per_class,
        "seed": seed,
        "classes": list(classes),
        "compress": compress,
        "pose_jitter": pose_jitter,
        "defect_scale": defect_scale,
    }


def _recorded_info(out: Path) -> dict:
    """``<out>/synthetic3d.json`` of an existing dataset; DataError when it is missing or unreadable."""
    path = out / "synthetic3d.json"
    try:
        return {**_LEGACY_INFO, **json.loads(path.read_text(encoding="utf-8"))}
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{out} exists but {path} is missing or unreadable ({exc}); it is not a Synthetic3D dataset "
            f"made by this generator: remove it (rm -rf {out}) or choose another folder"
        ) from exc


def ensure_dataset(out: str | Path, **generation: Any) -> Path:
    """Make the dataset at ``out`` unless one made with the same arguments is already there.

    A new dataset is written to ``<out>.partial`` and renamed, so an interrupted generation is never taken
    for a dataset.

    Args:
        out: the dataset root.
        generation: keyword arguments of :func:`make_dataset` (its defaults apply to the others).

    Returns:
        The dataset root.

    Raises:
        DataError: ``out`` exists but was made with other arguments (e.g. by an older version of this
            generator, whose defaults were ``pose_jitter`` 1 and ``defect_scale`` 1), naming the differing keys.
    """
    out = Path(out)
    bound = inspect.signature(make_dataset).bind(out, **generation)
    bound.apply_defaults()
    arguments = {k: v for k, v in bound.arguments.items() if k != "out"}
    arguments["classes"] = list(CLASS_NAMES if arguments["classes"] is None else arguments["classes"])
    wanted = _generation_info(**arguments)
    if out.exists():
        recorded = _recorded_info(out)
        differing = [
            f"{key} {recorded.get(key)!r} (wanted {value!r})"
            for key, value in wanted.items()
            if recorded.get(key) != value
        ]
        if differing:
            raise DataError(
                f"{out} was made with other generation arguments: {', '.join(differing)} "
                f"(see {out / 'synthetic3d.json'}); remove it to make the current one (rm -rf {out})"
            )
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    make_dataset(partial, **arguments)
    partial.rename(out)
    return out
