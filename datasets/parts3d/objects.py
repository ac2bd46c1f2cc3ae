"""The Parts3D object families: each class is a solid given by a signed distance function (SDF).

Object coordinates are metres with ``z`` up; every part rests on the plane ``z = 0`` (the table) and is
centred near the origin. A :class:`PartShape` gives the solid's distance (negative inside; a lower bound
of the true distance where it is not exact, so sphere tracing never steps through the surface), a sphere
that encloses it, and the surface coordinates its photo texture is mapped with (planar projections blended
by the normal, or a wrap around the part's axis).

Classes (sorted = incremental order): ``bolt`` (hex head + threaded shank, lying on a flat of its head),
``bracket`` (filleted L-profile with bolt holes), ``gear`` (toothed wheel with hub, bore and keyway),
``pebble`` (superellipsoid), ``perforated_disc`` (plate with a rim lip and a ring of holes), ``tube``
(hollow pipe bent through 140°).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["CLASS_NAMES", "SHAPES", "PartShape", "SurfaceCoordinates", "planar_coordinates"]

#: Texture coordinates of surface points: ``(u, v, weight)`` triples of ``(N,)`` arrays in metres; the
#: albedo is the weighted sum of the photo sampled at each ``(u, v)``.
SurfaceCoordinates = tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class PartShape:
    """One object family in object coordinates.

    Attributes:
        name: the class name.
        distance: ``(N, 3)`` points in metres -> ``(N,)`` signed distance in metres (lower bound outside).
        bound_centre: centre of a sphere enclosing the solid, metres ``(3,)``.
        bound_radius: its radius in metres.
        surface_coordinates: ``(points (N, 3), normals (N, 3))`` -> texture coordinates of those points.
    """

    name: str
    distance: Callable[[np.ndarray], np.ndarray]
    bound_centre: tuple[float, float, float]
    bound_radius: float
    surface_coordinates: Callable[[np.ndarray, np.ndarray], SurfaceCoordinates]


# --- distance building blocks (all arrays are (N,), metres) ---------------------------------------------------


def _rectangle(x: np.ndarray, y: np.ndarray, half_x: float, half_y: float) -> np.ndarray:
    """Exact 2D distance to an axis-aligned rectangle centred at the origin."""
    dx, dy = np.abs(x) - half_x, np.abs(y) - half_y
    return np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0)) + np.minimum(np.maximum(dx, dy), 0.0)


def _extrude(profile: np.ndarray, along: np.ndarray, half_length: float) -> np.ndarray:
    """Distance to a 2D profile (its distance ``profile``) swept over ``|along| <= half_length``."""
    cap = np.abs(along) - half_length
    return np.minimum(np.maximum(profile, cap), 0.0) + np.hypot(np.maximum(profile, 0.0), np.maximum(cap, 0.0))


def _rounded_box(p: np.ndarray, centre: tuple[float, ...], half: tuple[float, ...], rounding: float) -> np.ndarray:
    """Exact distance to a box with edges rounded by ``rounding``; ``p`` is ``(N, 3)``."""
    q = np.abs(p - np.asarray(centre)) - (np.asarray(half) - rounding)
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    return outside + np.minimum(q.max(axis=1), 0.0) - rounding


def _smooth_union(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """Union of two solids with a fillet of about ``width`` where they meet (polynomial smooth minimum)."""
    blend = np.clip(0.5 + 0.5 * (b - a) / width, 0.0, 1.0)
    return b + (a - b) * blend - width * blend * (1.0 - blend)


def _nearest_on_ring(x: np.ndarray, y: np.ndarray, count: int, radius: float, phase: float) -> np.ndarray:
    """Distance in the plane to the nearest of ``count`` points evenly spaced on a circle of ``radius``."""
    step = 2.0 * np.pi / count
    angle = np.round((np.arctan2(y, x) - phase) / step) * step + phase
    return np.hypot(x - radius * np.cos(angle), y - radius * np.sin(angle))


# --- texture coordinates --------------------------------------------------------------------------------------


def planar_coordinates(points: np.ndarray, normals: np.ndarray) -> SurfaceCoordinates:
    """Three axis-aligned planar projections, for parts without an axis to wrap a texture around.

    Each projection of the points ``(N, 3)`` is weighted by how squarely the surface (normals ``(N, 3)``) faces it.
    """
    weights = np.abs(normals) ** 4
    weights /= weights.sum(axis=1, keepdims=True)
    x, y, z = points.T
    return ((y, z, weights[:, 0]), (x, z, weights[:, 1]), (x, y, weights[:, 2]))


# --- the families ---------------------------------------------------------------------------------------------

_BOLT_FLAT = 0.0095  # head inradius = height of the shank axis above the table
_BOLT_SHANK = 0.0058
_BOLT_PITCH = 0.0025
_BOLT_THREAD_DEPTH = 0.0006


def _bolt(p: np.ndarray) -> np.ndarray:
    """Hex head (19 mm across flats, 8 mm thick) and a 54 mm shank threaded over its outer 35 mm, along x."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2] - _BOLT_FLAT
    radial = np.hypot(y, z)
    cos30 = np.sqrt(3.0) / 2.0
    hexagon = np.maximum.reduce([np.abs(z), np.abs(cos30 * y + 0.5 * z), np.abs(cos30 * y - 0.5 * z)]) - _BOLT_FLAT
    head = _extrude(np.maximum(hexagon, radial - 1.09 * _BOLT_FLAT), x + 0.028, 0.004)
    threaded = np.clip((x + 0.005) / 0.002, 0.0, 1.0)
    phase = 2.0 * np.pi * x / _BOLT_PITCH - np.arctan2(z, y)
    groove = _BOLT_THREAD_DEPTH * threaded * (0.5 + 0.5 * np.sin(phase))
    shank = 0.8 * _extrude(radial - (_BOLT_SHANK - groove), x - 0.003, 0.027)
    return np.minimum(head, shank)


def _bolt_wrap(points: np.ndarray, normals: np.ndarray) -> SurfaceCoordinates:
    """Cylindrical projection around the bolt axis: u along the axis, v around it (arc length on the shank)."""
    angle = np.arctan2(points[:, 2] - _BOLT_FLAT, points[:, 1])
    return ((points[:, 0], angle * _BOLT_SHANK, np.ones(len(points))),)


def _bracket(p: np.ndarray) -> np.ndarray:
    """L-profile 28 mm wide: a 54×5 mm foot and a 28 mm upright joined by a fillet, with three holes."""
    foot = _rounded_box(p, (0.002, 0.0, 0.0025), (0.027, 0.014, 0.0025), 0.001)
    upright = _rounded_box(p, (-0.0225, 0.0, 0.014), (0.0025, 0.014, 0.014), 0.001)
    solid = _smooth_union(foot, upright, 0.004)
    x, y, z = p.T
    foot_holes = np.hypot(x - 0.011, np.abs(y) - 0.007) - 0.0035
    upright_hole = np.hypot(y, z - 0.018) - 0.004
    return np.maximum(solid, -np.minimum(foot_holes, upright_hole))


_GEAR_TEETH = 14
_GEAR_ROOT = 0.0225
_GEAR_TOOTH = 0.004


def _gear_outline(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """2D distance bound to the toothed rim: ``(radius − rim(angle)) / sqrt(1 + (max |rim'| / radius)²)``.

    Teeth are flat-topped, with flanks that ease in and out (a smoothstep of a clipped cosine).
    """
    radial, angle = np.hypot(x, y), np.arctan2(y, x)
    wave = np.clip(0.5 + 1.3 * np.cos(_GEAR_TEETH * angle), 0.0, 1.0)
    rim = _GEAR_ROOT + _GEAR_TOOTH * wave * wave * (3.0 - 2.0 * wave)
    steepest = _GEAR_TOOTH * 1.5 * 1.3 * _GEAR_TEETH  # max |d rim / d angle|
    return (radial - rim) / np.sqrt(1.0 + (steepest / np.maximum(radial, 1e-4)) ** 2)


def _gear(p: np.ndarray) -> np.ndarray:
    """14-tooth wheel (Ø 53 mm, 7 mm thick) with a 10 mm hub, a Ø 12 mm bore and a keyway."""
    x, y, z = p.T
    radial = np.hypot(x, y)
    bore = np.minimum(radial - 0.006, _rectangle(x - 0.0065, y, 0.0015, 0.002))
    wheel = _extrude(np.maximum(_gear_outline(x, y), -bore), z - 0.0035, 0.0035)
    hub = _extrude(np.maximum(radial - 0.0105, -bore), z - 0.005, 0.005)
    return np.minimum(wheel, hub)


_PEBBLE_AXES = (0.030, 0.021, 0.013)
_PEBBLE_EXPONENTS = (2.0 / 0.6, 2.0 / 0.8)  # around z (squarish outline), along z (rounded profile)
_PEBBLE_CENTRE_Z = 0.8 * _PEBBLE_AXES[2]  # slightly sunk: it rests on a flattened bottom


def _pebble(p: np.ndarray) -> np.ndarray:
    """Superellipsoid 60×42×26 mm; ``(gauge − 1)·min axis`` bounds the distance (convex, exponents ≥ 2)."""
    a, b, c = _PEBBLE_AXES
    around, along = _PEBBLE_EXPONENTS
    x, y, z = np.abs(p[:, 0]) / a, np.abs(p[:, 1]) / b, np.abs(p[:, 2] - _PEBBLE_CENTRE_Z) / c
    gauge = ((x**around + y**around) ** (along / around) + z**along) ** (1.0 / along)
    return (gauge - 1.0) * min(_PEBBLE_AXES)


def _perforated_disc(p: np.ndarray) -> np.ndarray:
    """Plate Ø 56 mm, 5 mm thick, with a rim lip, a Ø 13 mm centre hole and six Ø 7.6 mm holes around it."""
    x, y, z = p.T
    radial = np.hypot(x, y)
    holes = np.minimum(radial - 0.0065, _nearest_on_ring(x, y, 6, 0.017, np.pi / 6.0) - 0.0038)
    plate = _extrude(np.maximum(radial - 0.027, -holes) + 0.001, z - 0.0025, 0.0015) - 0.001
    lip = _extrude(np.abs(radial - 0.02675) - 0.00125, z - 0.0035, 0.0035)
    return np.minimum(plate, lip)


_TUBE_BEND = 0.027  # centreline radius
_TUBE_OUTER, _TUBE_INNER = 0.0075, 0.005
_TUBE_HALF_ANGLE = np.deg2rad(70.0)
_TUBE_SHIFT = 0.5 * _TUBE_BEND * (1.0 + np.cos(_TUBE_HALF_ANGLE))  # centres the arc on the origin


def _tube_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(angle along the bend, radial offset from the centreline, height above the centreline)``."""
    x, y = points[:, 0] + _TUBE_SHIFT, points[:, 1]
    return np.arctan2(y, x), np.hypot(x, y) - _TUBE_BEND, points[:, 2] - _TUBE_OUTER


def _tube(p: np.ndarray) -> np.ndarray:
    """Pipe Ø 15 mm (wall 2.5 mm) bent on a 27 mm radius through ±70°, cut square at both ends."""
    _, offset, height = _tube_frame(p)
    middle, half_wall = 0.5 * (_TUBE_OUTER + _TUBE_INNER), 0.5 * (_TUBE_OUTER - _TUBE_INNER)
    wall = np.abs(np.hypot(offset, height) - middle) - half_wall
    x, y = p[:, 0] + _TUBE_SHIFT, np.abs(p[:, 1])
    ends = -np.sin(_TUBE_HALF_ANGLE) * x + np.cos(_TUBE_HALF_ANGLE) * y
    return np.maximum(wall, ends)


def _tube_wrap(points: np.ndarray, normals: np.ndarray) -> SurfaceCoordinates:
    """Projection wrapped on the bend: u = arc length along the centreline, v = arc length around the pipe."""
    angle, offset, height = _tube_frame(points)
    return ((angle * _TUBE_BEND, np.arctan2(height, offset) * _TUBE_OUTER, np.ones(len(points))),)


SHAPES: dict[str, PartShape] = {
    shape.name: shape
    for shape in (
        PartShape("bolt", _bolt, (0.0, 0.0, _BOLT_FLAT), 0.035, _bolt_wrap),
        PartShape("bracket", _bracket, (0.002, 0.0, 0.014), 0.035, planar_coordinates),
        PartShape("gear", _gear, (0.0, 0.0, 0.004), 0.028, planar_coordinates),
        PartShape("pebble", _pebble, (0.0, 0.0, _PEBBLE_CENTRE_Z), 0.031, planar_coordinates),
        PartShape("perforated_disc", _perforated_disc, (0.0, 0.0, 0.0035), 0.029, planar_coordinates),
        PartShape("tube", _tube, (0.0, 0.0, _TUBE_OUTER), 0.035, _tube_wrap),
    )
}
#: The class names, sorted: the order incremental settings split them in.
CLASS_NAMES = tuple(sorted(SHAPES))
