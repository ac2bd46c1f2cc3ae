"""Parts3D defect kinds: each one changes the part's shape, its material, its visible paint or its measured depth.

=================  ===================================================  ==============
kind               what changes                                         modalities
=================  ===================================================  ==============
``scratch``        a thin bright or dark curved line in the paint        RGB only
``deformation``    a smooth dent pressed in along the scanner's view     depth only
``hole``           a pit of missing material with a darkened inside     RGB + depth
``discoloration``  a soft patch of another photo texture and tint       RGB only
``foreign_object`` a small ball of foreign material stuck on the part   RGB + depth
=================  ===================================================  ==============

Paint-like changes (scratch, discoloration) show in visible light only: the scanner's near-infrared pattern
sees the material underneath. The deformation is measured by the scanner but the colour image keeps the
undeformed part's look, so it is invisible in RGB. A defect is centred on a random camera-facing point of
the part that stands clear of the table, and changes the part only where it is at least
:data:`CLEARANCE` above the table.

A defect is an object with four hooks (:class:`Defect`); the renderer calls all of them, and a kind
overrides only those it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from datasets.parts3d.objects import planar_coordinates
from datasets.parts3d.raymarch import SURFACE_TOLERANCE, Surface
from datasets.parts3d.solid import PART_ADDED, PART_OBJECT, Ball, Solid
from datasets.parts3d.textures import PHOTOS, Finish

__all__ = ["CLEARANCE", "DEFECT_KINDS", "DEFECT_MODALITIES", "Defect", "NO_DEFECT", "sample_defect"]

#: Defects change the part only where it stands at least this high above the table, metres.
CLEARANCE = 0.0015
#: Which sample modalities each kind changes. The order (RGB-only, depth-only, both, ...) is the order test
#: samples cycle through, so any three consecutive defective samples include each modality pattern.
DEFECT_MODALITIES: dict[str, frozenset[str]] = {
    "scratch": frozenset({"rgb"}),
    "deformation": frozenset({"xyz"}),
    "hole": frozenset({"rgb", "xyz"}),
    "discoloration": frozenset({"rgb"}),
    "foreign_object": frozenset({"rgb", "xyz"}),
}
DEFECT_KINDS = tuple(DEFECT_MODALITIES)

#: Tints of stains (discoloration) and of foreign material: rust, bleach, soot, oil; red, cyan, yellow, black.
_STAIN_TINTS = ((0.50, 0.25, 0.10), (0.93, 0.90, 0.82), (0.12, 0.11, 0.10), (0.30, 0.25, 0.36))
_FOREIGN_TINTS = ((0.85, 0.12, 0.10), (0.10, 0.70, 0.80), (0.90, 0.80, 0.10), (0.06, 0.06, 0.07))
_SCRATCH_METAL = np.array([0.92, 0.92, 0.95])
#: A scratch reaches surface points within ``0.3 · its extent + 2 mm`` of its tangent plane (curved parts bend away).
_SCRATCH_BAND = (0.3, 0.002)
_CURVE_POINTS = 9


class Defect:
    """No defect; kinds override the hooks they need. Fields are ``(H, W)`` images of the camera's view."""

    def reshape(self, solid: Solid) -> Solid:
        """The part with material removed or added."""
        return solid

    def alter_material(self, surface: Surface, albedo: np.ndarray) -> np.ndarray:
        """RGB reflectance ``(H, W, 3)`` after material changes (seen by both the camera and the scanner)."""
        return albedo

    def paint(self, surface: Surface, albedo: np.ndarray) -> np.ndarray:
        """RGB reflectance ``(H, W, 3)`` after paint-like changes (visible light only)."""
        return albedo

    def sink(self, surface: Surface) -> np.ndarray:
        """``(H, W)`` metres each pixel's surface point is pressed away from the camera along its ray."""
        return np.zeros(surface.ranges.shape)


#: The defect-free part.
NO_DEFECT = Defect()


def _changeable(surface: Surface) -> np.ndarray:
    """``(H, W)`` bool: pixels on the part itself at least :data:`CLEARANCE` above the table."""
    return (surface.part == PART_OBJECT) & (surface.points[..., 2] >= CLEARANCE)


def _bump(distance: np.ndarray, radius: float) -> np.ndarray:
    """Smooth compact weight: 1 at distance 0, falling to 0 (with zero slope) at ``radius``."""
    return np.clip(1.0 - (distance / radius) ** 2, 0.0, None) ** 2


def _tangent_frame(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane perpendicular to ``normal`` ``(3,)``."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    first = np.cross(normal, helper)
    first /= np.linalg.norm(first)
    return first, np.cross(normal, first)


def _distance_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance of 2D points ``(N, 2)`` to a polyline ``(K, 2)``; ``(N,)``."""
    starts, ends = polyline[:-1], polyline[1:]
    segment = ends - starts  # (K-1)×2
    offset = points[:, None, :] - starts[None]  # N×(K-1)×2
    along = np.clip((offset * segment).sum(-1) / (segment**2).sum(-1), 0.0, 1.0)
    return np.linalg.norm(offset - along[..., None] * segment, axis=-1).min(axis=1)


@dataclass(frozen=True, eq=False)
class Scratch(Defect):
    """A curved line of width ``2·half_width`` drawn in the plane tangent at ``anchor``; metres, world frame."""

    anchor: np.ndarray
    normal: np.ndarray
    curve: np.ndarray  # K×2 points in the tangent plane
    half_width: float
    pixel: float
    bright: bool

    def paint(self, surface: Surface, albedo: np.ndarray) -> np.ndarray:
        """Bare metal (bright) or a dirt-filled groove (dark) along the curve, anti-aliased over one pixel."""
        first, second = _tangent_frame(self.normal)
        offset = surface.points - self.anchor
        # Only the sheet of surface the line is drawn on: points near the tangent plane, not surfaces behind it.
        band = _SCRATCH_BAND[0] * np.ptp(self.curve, axis=0).max() + _SCRATCH_BAND[1]
        near = _changeable(surface) & (np.abs(offset @ self.normal) < band)
        planar = np.stack([offset[near] @ first, offset[near] @ second], axis=1)
        cover = np.clip(0.5 + (self.half_width - _distance_to_polyline(planar, self.curve)) / self.pixel, 0.0, 1.0)
        target = _SCRATCH_METAL if self.bright else 0.25 * albedo[near]
        result = albedo.copy()
        result[near] = albedo[near] + cover[:, None] * (target - albedo[near])
        return result


@dataclass(frozen=True, eq=False)
class Discoloration(Defect):
    """A soft round patch of ``finish`` of the given ``radius`` (metres) around ``anchor``."""

    anchor: np.ndarray
    radius: float
    strength: float
    finish: Finish

    def paint(self, surface: Surface, albedo: np.ndarray) -> np.ndarray:
        """Blend towards the stain's albedo, by ``strength`` at the centre and smoothly to 0 at ``radius``."""
        weight = self.strength * _bump(np.linalg.norm(surface.points - self.anchor, axis=-1), self.radius)
        inside = _changeable(surface) & (weight > 0.0)
        stain = self.finish.albedo(planar_coordinates(surface.points[inside], surface.normals[inside]), (0.0, 0.0))
        result = albedo.copy()
        result[inside] = albedo[inside] + weight[inside, None] * (stain - albedo[inside])
        return result


@dataclass(frozen=True, eq=False)
class Hole(Defect):
    """A pit: the ball ``pit`` cut out of the part; its inside is darkened to ``shade`` of the albedo."""

    pit: Ball
    shade: float

    def reshape(self, solid: Solid) -> Solid:
        """Cut the pit."""
        return solid.with_removed(self.pit)

    def alter_material(self, surface: Surface, albedo: np.ndarray) -> np.ndarray:
        """Darken the pit's wall (surface points on the ball)."""
        on_wall = np.abs(self.pit.distance(surface.points.reshape(-1, 3))).reshape(surface.part.shape)
        inside = _changeable(surface) & (on_wall < 5.0 * SURFACE_TOLERANCE)
        result = albedo.copy()
        result[inside] *= self.shade
        return result


@dataclass(frozen=True, eq=False)
class ForeignObject(Defect):
    """A ball of foreign material, ``blob``, stuck on the part, made of ``finish``."""

    blob: Ball
    finish: Finish

    def reshape(self, solid: Solid) -> Solid:
        """Add the blob."""
        return solid.with_added(self.blob)

    def alter_material(self, surface: Surface, albedo: np.ndarray) -> np.ndarray:
        """Colour the pixels that see the blob."""
        on_blob = surface.part == PART_ADDED
        result = albedo.copy()
        result[on_blob] = self.finish.albedo(planar_coordinates(surface.points[on_blob], surface.normals[on_blob]),
                                             (0.0, 0.0))
        return result


@dataclass(frozen=True, eq=False)
class Deformation(Defect):
    """A smooth dent of ``depth`` and ``radius`` (metres) around ``anchor``, pressed in along the camera rays."""

    anchor: np.ndarray
    radius: float
    depth: float

    def sink(self, surface: Surface) -> np.ndarray:
        """Lower the surface by ``depth · bump`` but by at most half its height above :data:`CLEARANCE`."""
        height = surface.points[..., 2]
        drop = self.depth * _bump(np.linalg.norm(surface.points - self.anchor, axis=-1), self.radius)
        drop = np.where(_changeable(surface), np.minimum(drop, 0.5 * (height - CLEARANCE)), 0.0)
        return drop / np.abs(surface.rays[..., 2])


def _anchor(rng: np.random.Generator, surface: Surface, clearance: float) -> tuple[np.ndarray, np.ndarray]:
    """A random camera-facing surface point of the part: ``(point (3,), normal (3,))``, world frame.

    The point lies one pixel inside the part's outline and at least ``CLEARANCE + clearance`` above the table;
    where no point qualifies, one of the highest quarter of the part's pixels.
    """
    on_part = (surface.part == PART_OBJECT).astype(np.uint8)
    if not on_part.any():
        raise RuntimeError("the part is not in view: no pixel to put a defect on")
    interior = cv2.erode(on_part, np.ones((3, 3), np.uint8)) > 0
    facing = -np.einsum("hwc,hwc->hw", surface.normals, surface.rays) > 0.5
    height = surface.points[..., 2]
    candidates = np.flatnonzero(interior & facing & (height >= CLEARANCE + clearance))
    if not candidates.size:
        heights = np.where(on_part > 0, height, -np.inf).ravel()
        candidates = np.argsort(heights)[-max(1, int(on_part.sum()) // 4) :]
    pick = candidates[rng.integers(len(candidates))]
    return surface.points.reshape(-1, 3)[pick], surface.normals.reshape(-1, 3)[pick]


def _other_photo(rng: np.random.Generator, avoid: str) -> str:
    choices = [name for name in PHOTOS if name != avoid]
    return choices[rng.integers(len(choices))]


def _scratch(rng: np.random.Generator, surface: Surface, finish: Finish, pixel: float) -> Defect:
    anchor, normal = _anchor(rng, surface, 0.002)
    length, angle, bow = rng.uniform(0.024, 0.038), rng.uniform(0.0, np.pi), rng.uniform(-0.25, 0.25)
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-along[1], along[0]])
    s = np.linspace(-0.5, 0.5, _CURVE_POINTS)[:, None]
    curve = length * (s * along + bow * (1.0 - 4.0 * s**2) * across)
    return Scratch(anchor, normal, curve, max(3e-4, 2.5 * pixel), pixel, bool(rng.random() < 0.5))


def _deformation(rng: np.random.Generator, surface: Surface, finish: Finish, pixel: float) -> Defect:
    anchor, _ = _anchor(rng, surface, 0.002)
    return Deformation(anchor, rng.uniform(0.007, 0.011), rng.uniform(0.003, 0.005))


def _hole(rng: np.random.Generator, surface: Surface, finish: Finish, pixel: float) -> Defect:
    radius = rng.uniform(0.0045, 0.007)
    anchor, normal = _anchor(rng, surface, 0.6 * radius)
    return Hole(Ball(anchor + 0.45 * radius * normal, radius), rng.uniform(0.3, 0.45))


def _discoloration(rng: np.random.Generator, surface: Surface, finish: Finish, pixel: float) -> Defect:
    anchor, _ = _anchor(rng, surface, 0.002)
    tint = _STAIN_TINTS[rng.integers(len(_STAIN_TINTS))]
    stain = Finish(_other_photo(rng, finish.photo), tint, 0.35, finish.texels_per_metre)
    return Discoloration(anchor, rng.uniform(0.010, 0.016), rng.uniform(0.7, 0.95), stain)


def _foreign_object(rng: np.random.Generator, surface: Surface, finish: Finish, pixel: float) -> Defect:
    radius = rng.uniform(0.004, 0.0065)
    anchor, normal = _anchor(rng, surface, 0.6 * radius)
    tint = _FOREIGN_TINTS[rng.integers(len(_FOREIGN_TINTS))]
    material = Finish(_other_photo(rng, finish.photo), tint, 0.3, 6000.0)
    return ForeignObject(Ball(anchor + 0.5 * radius * normal, radius), material)


_SAMPLERS: dict[str, Callable[[np.random.Generator, Surface, Finish, float], Defect]] = {
    "scratch": _scratch,
    "deformation": _deformation,
    "hole": _hole,
    "discoloration": _discoloration,
    "foreign_object": _foreign_object,
}


def sample_defect(kind: str, rng: np.random.Generator, surface: Surface, finish: Finish, pixel: float) -> Defect:
    """A random defect of ``kind`` on the part seen in ``surface``.

    Args:
        kind: one of :data:`DEFECT_KINDS`.
        rng: the sample's generator.
        surface: the defect-free view of the part.
        finish: the part's material (a stain or foreign object uses another photo).
        pixel: size of one pixel on the part, metres (a scratch is at least about one pixel wide).

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind not in _SAMPLERS:
        raise ValueError(f"unknown Parts3D defect kind {kind!r}; expected one of {DEFECT_KINDS}")
    return _SAMPLERS[kind](rng, surface, finish, pixel)
