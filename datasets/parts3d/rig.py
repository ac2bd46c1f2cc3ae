"""The Parts3D inspection cell: a fixed pinhole camera with a structured-light projector above a table.

World frame: metres, the table is the plane ``z = 0`` and ``z`` points up. The camera stands 0.40 m from
the world origin, tilted 20° from the vertical towards ``-y``, and sees a 0.09 m wide field there; its frame
is the MVTec 3D-AD one (``x`` right, ``y`` down the image, ``z`` along the optical axis), and the point
clouds are written in it. The projector sits 70 mm to the camera's right (the triangulation baseline).
The cell is the same for every sample; only the part's pose and the lighting change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Rig"]

_DISTANCE = 0.40  # camera centre to the world origin, metres
_TILT = np.deg2rad(20.0)  # optical axis from the table normal
_FIELD_WIDTH = 0.09  # width seen at the world origin, metres
_BASELINE = 0.07  # projector offset along the camera x axis, metres


@dataclass(frozen=True, eq=False)
class Rig:
    """Camera and projector geometry for ``size × size`` images.

    Attributes:
        size: image side in pixels.
        focal: focal length in pixels (principal point at the image centre).
        rotation: ``(3, 3)`` world -> camera rotation (rows = camera axes in world coordinates).
        camera: camera centre in world coordinates ``(3,)``.
        projector: projector centre in world coordinates ``(3,)``.
    """

    size: int
    focal: float
    rotation: np.ndarray
    camera: np.ndarray
    projector: np.ndarray

    @classmethod
    def for_size(cls, size: int) -> Rig:
        """The cell imaged at ``size × size`` pixels."""
        forward = np.array([0.0, np.sin(_TILT), -np.cos(_TILT)])
        right = np.array([1.0, 0.0, 0.0])
        down = np.cross(forward, right)
        rotation = np.stack([right, down, forward])
        camera = -_DISTANCE * forward
        return cls(size, size * _DISTANCE / _FIELD_WIDTH, rotation, camera, camera + _BASELINE * right)

    @property
    def pitch(self) -> float:
        """Size of one pixel at the world origin, in metres."""
        return _DISTANCE / self.focal

    def ray_directions(self) -> np.ndarray:
        """Unit direction of each pixel's viewing ray: ``(size, size, 3)`` in camera coordinates."""
        centre = (self.size - 1) / 2.0
        rows, cols = np.mgrid[0 : self.size, 0 : self.size].astype(np.float64)
        rays = np.stack([(cols - centre) / self.focal, (rows - centre) / self.focal, np.ones_like(rows)], axis=-1)
        return rays / np.linalg.norm(rays, axis=-1, keepdims=True)

    def to_world(self, vectors: np.ndarray) -> np.ndarray:
        """Rotate camera-frame vectors ``(..., 3)`` into the world frame (no translation)."""
        return vectors @ self.rotation

    def height_above_table(self, xyz: np.ndarray) -> np.ndarray:
        """Height in metres above the table of camera-frame points ``(..., 3)`` (meaningless for missing points)."""
        return self.to_world(xyz)[..., 2] + self.camera[2]
