"""A part placed on the table: its family's shape at a pose, with material removed (pits) or added (blobs).

The distance is in world metres; removing a ball intersects the solid with the ball's outside, adding one
is a union, so outside the balls' reach the distance is exactly that of the defect-free part.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from datasets.parts3d.objects import PartShape

__all__ = ["PART_TABLE", "PART_OBJECT", "PART_ADDED", "Ball", "Pose", "Solid"]

#: What a pixel sees: the table, the part, or material added to it (a foreign object).
PART_TABLE, PART_OBJECT, PART_ADDED = 0, 1, 2

_MAX_YAW = 0.15  # radians
_MAX_SHIFT = 0.005  # metres, along each table axis
_MAX_SCALE_CHANGE = 0.04  # relative


@dataclass(frozen=True)
class Pose:
    """Rotation about the table normal, shift along the table and uniform scale of a part.

    ``world = scale · Rz(yaw) · object + (shift_x, shift_y, 0)``.
    """

    yaw: float
    shift_x: float
    shift_y: float
    scale: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Pose:
        """A jittered pose: yaw ±0.15 rad, shift ±5 mm per axis, scale ±4 %."""
        yaw, shift_x, shift_y, scale = rng.uniform(-1.0, 1.0, size=4)
        return cls(_MAX_YAW * yaw, _MAX_SHIFT * shift_x, _MAX_SHIFT * shift_y, 1.0 + _MAX_SCALE_CHANGE * scale)

    def _rotation(self) -> np.ndarray:
        cos, sin = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """Object-frame points ``(N, 3)`` -> world points ``(N, 3)``, metres."""
        return self.scale * points @ self._rotation().T + np.array([self.shift_x, self.shift_y, 0.0])

    def to_object(self, points: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` -> object-frame points ``(N, 3)``, metres."""
        return (points - np.array([self.shift_x, self.shift_y, 0.0])) @ self._rotation() / self.scale

    def direction_to_object(self, vectors: np.ndarray) -> np.ndarray:
        """World directions ``(N, 3)`` -> object-frame directions (rotation only)."""
        return vectors @ self._rotation()


@dataclass(frozen=True, eq=False)
class Ball:
    """A ball of material in world coordinates: ``centre`` ``(3,)`` and ``radius``, metres."""

    centre: np.ndarray
    radius: float

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance ``(N,)`` of world points ``(N, 3)``."""
        return np.linalg.norm(points - self.centre, axis=1) - self.radius


@dataclass(frozen=True, eq=False)
class Solid:
    """A posed part with ``removed`` and ``added`` balls of material."""

    shape: PartShape
    pose: Pose
    removed: tuple[Ball, ...] = ()
    added: tuple[Ball, ...] = ()

    def with_removed(self, ball: Ball) -> Solid:
        """The same solid with ``ball`` cut away."""
        return dataclasses.replace(self, removed=self.removed + (ball,))

    def with_added(self, ball: Ball) -> Solid:
        """The same solid with ``ball`` joined to it."""
        return dataclasses.replace(self, added=self.added + (ball,))

    def _part_distance(self, points: np.ndarray) -> np.ndarray:
        distance = self.pose.scale * self.shape.distance(self.pose.to_object(points))
        for ball in self.removed:
            distance = np.maximum(distance, -ball.distance(points))
        return distance

    def _added_distance(self, points: np.ndarray) -> np.ndarray:
        return np.min([ball.distance(points) for ball in self.added], axis=0) if self.added else np.inf

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance in metres ``(N,)`` of world points ``(N, 3)`` (a lower bound outside)."""
        return np.minimum(self._part_distance(points), self._added_distance(points))

    def part(self, points: np.ndarray) -> np.ndarray:
        """``PART_ADDED`` where a surface point ``(N, 3)`` lies on added material, else ``PART_OBJECT``; ``(N,)``."""
        on_added = self._added_distance(points) < self._part_distance(points)
        return np.where(on_added, PART_ADDED, PART_OBJECT).astype(np.int8)

    def bound(self) -> tuple[np.ndarray, float]:
        """``(centre (3,), radius)`` of a sphere enclosing the solid, world metres."""
        centre = self.pose.to_world(np.asarray(self.shape.bound_centre)[None])[0]
        radius = self.pose.scale * self.shape.bound_radius
        for ball in self.added:
            radius = max(radius, float(np.linalg.norm(ball.centre - centre)) + ball.radius)
        return centre, radius
