"""Synthetic3D defects: what each defect type changes in a scene (height, albedo, or both).

* ``color_stain`` changes RGB only; ``dent`` and ``bump`` change the geometry only (RGB stays shaded
  from the undeformed surface, so they are invisible in RGB); ``crack`` and ``contamination`` change both.
* Changes are confined to the object eroded by 1 px, so their shading changes stay on the object too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from datasets.synthetic.render import Scene

__all__ = ["DEFECT_TYPES", "DEFAULT_DEFECT_SCALE", "apply_defect"]

DEFECT_TYPES = ("bump", "color_stain", "contamination", "crack", "dent")
#: Size factor of the defects: blob radius 18-28 mm on objects 30-90 mm wide, cracks 4.8 mm wide; at 1 a defect
#: fills about one 16-px token of the 128-px default, too small for a stride-16 feature map to resolve.
DEFAULT_DEFECT_SCALE = 2.0
_STAIN_COLOURS = np.array([[0.30, 0.18, 0.06], [0.08, 0.08, 0.10], [0.65, 0.10, 0.55], [0.10, 0.45, 0.15]])
_CONTAMINANT_COLOURS = np.array([[0.12, 0.12, 0.12], [0.92, 0.92, 0.88], [0.35, 0.65, 0.10], [0.15, 0.20, 0.75]])


def _blob(scene: Scene, centre: tuple[int, int], radius: float, rng: np.random.Generator) -> np.ndarray:
    """Relative distance ``d / r(angle)`` to a wobbly blob outline around a pixel (< 1 inside). Shape (H, W)."""
    dx = scene.world_x - scene.world_x[centre]
    dy = scene.world_y - scene.world_y[centre]
    angle = np.arctan2(dy, dx)
    wobble = rng.uniform(0.0, 0.25, size=2)
    phase = rng.uniform(0.0, 2 * np.pi, size=2)
    outline = radius * (1 + wobble[0] * np.sin(3 * angle + phase[0]) + wobble[1] * np.sin(5 * angle + phase[1]))
    return np.hypot(dx, dy) / outline


def _crack_distance(scene: Scene, centre: tuple[int, int], length: float, rng: np.random.Generator) -> np.ndarray:
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


def apply_defect(
    scene: Scene, kind: str, rng: np.random.Generator, scale: float
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
