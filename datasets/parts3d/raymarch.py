"""Ray casting against a :class:`~datasets.parts3d.solid.Solid` by sphere tracing, and what the camera sees.

Rays are marched only inside the sphere that encloses the solid (a ray that misses it meets the table);
every step advances by 0.9 of the distance bound, so the march never crosses the surface. All rays of an
image march together as numpy arrays; finished rays drop out of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.parts3d.rig import Rig
from datasets.parts3d.solid import PART_TABLE, Solid

__all__ = ["SURFACE_TOLERANCE", "Surface", "cast", "march", "occluded", "surface_normals"]

#: A ray has reached the surface once its point is this close to it, metres.
SURFACE_TOLERANCE = 2e-5
_MAX_STEPS = 160
_STEP_FRACTION = 0.9
_NORMAL_STEP = 5e-5  # metres, finite-difference step of the distance gradient
_SHADOW_START = 1e-4  # metres a shadow ray starts off the surface, along the normal
_TETRAHEDRON = np.array([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])


@dataclass(frozen=True, eq=False)
class Surface:
    """What each camera pixel sees (world frame, metres).

    Attributes:
        part: ``(H, W)`` int8, ``PART_TABLE`` / ``PART_OBJECT`` / ``PART_ADDED``.
        points: ``(H, W, 3)`` the surface point hit.
        normals: ``(H, W, 3)`` unit outward normals there.
        ranges: ``(H, W)`` distance from the camera centre along the ray.
        rays: ``(H, W, 3)`` unit ray directions.
    """

    part: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    ranges: np.ndarray
    rays: np.ndarray


def _sphere_interval(
    centre: np.ndarray, radius: float, origins: np.ndarray, directions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameters ``(t_in, t_out)`` ``(N,)`` where rays cross a sphere; ``(inf, -inf)`` for a miss."""
    offset = origins - centre
    half_b = np.einsum("ij,ij->i", offset, directions)
    discriminant = half_b**2 - (np.einsum("ij,ij->i", offset, offset) - radius**2)
    root = np.sqrt(np.maximum(discriminant, 0.0))
    crosses = discriminant > 0.0
    return np.where(crosses, -half_b - root, np.inf), np.where(crosses, -half_b + root, -np.inf)


def march(
    solid: Solid, origins: np.ndarray, directions: np.ndarray, t_near: np.ndarray, t_far: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sphere-trace rays ``origins + t · directions`` (``(N, 3)`` each) over ``t_near <= t < t_far`` (``(N,)``).

    Returns:
        ``(t, hit)``: ``(N,)`` ray parameter of the hit (``t_near`` where none) and ``(N,)`` bool.
    """
    t, hit = np.array(t_near, dtype=np.float64), np.zeros(len(t_near), dtype=bool)
    index = np.flatnonzero(t < t_far)
    start, step, reach, limit = origins[index], directions[index], t[index], t_far[index]
    for _ in range(_MAX_STEPS):
        if not index.size:
            break
        distance = solid.distance(start + step * reach[:, None])
        arrived = distance < SURFACE_TOLERANCE
        hit[index[arrived]] = True
        t[index[arrived]] = reach[arrived]
        reach = reach + _STEP_FRACTION * distance
        going = ~arrived & (reach < limit)
        index, start, step, reach, limit = index[going], start[going], step[going], reach[going], limit[going]
    return t, hit


def surface_normals(solid: Solid, points: np.ndarray) -> np.ndarray:
    """Unit outward normals ``(N, 3)`` at world surface points ``(N, 3)`` (tetrahedral finite differences)."""
    probes = points[:, None, :] + _NORMAL_STEP * _TETRAHEDRON  # N×4×3
    distance = solid.distance(probes.reshape(-1, 3)).reshape(-1, 4, 1)
    gradient = (distance * _TETRAHEDRON).sum(axis=1)
    return gradient / np.maximum(np.linalg.norm(gradient, axis=1, keepdims=True), 1e-12)


def occluded(
    solid: Solid, points: np.ndarray, normals: np.ndarray, directions: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Whether the solid blocks the way from surface points towards a light or the projector.

    Args:
        solid: the blocker.
        points: ``(N, 3)`` surface points; the rays start just off them along ``normals`` ``(N, 3)``.
        directions: ``(N, 3)`` unit directions towards the source.
        lengths: ``(N,)`` distances to the source (``inf`` for a light at infinity).

    Returns:
        ``(N,)`` bool.
    """
    starts = points + _SHADOW_START * normals
    centre, radius = solid.bound()
    t_in, t_out = _sphere_interval(centre, radius, starts, directions)
    return march(solid, starts, directions, np.maximum(t_in, 0.0), np.minimum(t_out, lengths))[1]


def cast(rig: Rig, solid: Solid) -> Surface:
    """Cast every camera ray of ``rig`` at the table and ``solid``; ``(H, W, ...)`` fields of what each one sees."""
    rays = rig.to_world(rig.ray_directions()).reshape(-1, 3)
    origins = np.broadcast_to(rig.camera, rays.shape)
    t_table = -rig.camera[2] / rays[:, 2]
    centre, radius = solid.bound()
    t_in, t_out = _sphere_interval(centre, radius, origins, rays)
    t_hit, hit = march(solid, origins, rays, np.maximum(t_in, 0.0), np.minimum(t_out, t_table))
    ranges = np.where(hit, t_hit, t_table)
    points = rig.camera + rays * ranges[:, None]
    part = np.full(len(rays), PART_TABLE, dtype=np.int8)
    part[hit] = solid.part(points[hit])
    normals = np.tile([0.0, 0.0, 1.0], (len(rays), 1))
    normals[hit] = surface_normals(solid, points[hit])
    shape = (rig.size, rig.size)
    return Surface(part.reshape(shape), points.reshape(*shape, 3), normals.reshape(*shape, 3), ranges.reshape(shape),
                   rays.reshape(*shape, 3))
