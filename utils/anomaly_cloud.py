"""A point cloud coloured by its anomaly map, as a PLY file (``tools/predict.py``'s ``clouds/<name>.ply``).

The organised cloud and the map are pixel-aligned ``(H, W)`` grids at the cloud's full resolution (the
caller upsamples the map, never the cloud, so every written coordinate is a measured one). The file
holds one vertex per valid point (not ``(0, 0, 0)``, the missing-point mark of MVTec 3D-AD), in row-major
pixel order, with the properties

* ``x``, ``y``, ``z``: float32, metres, exactly the input's values;
* ``red``, ``green``, ``blue``: uint8, the map value on the prediction overlay's colour scale
  (:func:`utils.vis.anomaly_colours`: JET, 0 blue, ``vmax`` red);
* ``anomaly``: float32, the map value itself, for thresholding or re-colouring in a viewer.

Binary little-endian with the standard property names and types (``float``, ``uchar``), written with
``plyfile``, for MeshLab, CloudCompare (which offers ``anomaly`` as a scalar field) and Open3D (checked:
``o3d.io.read_point_cloud`` gives the points and colours, ``o3d.t.io.read_point_cloud`` also ``point["anomaly"]``).
The file is written atomically (:mod:`utils.fileio`). A cloud without any valid point is skipped with a
warning and no file: a PLY without vertices is valid, but viewers refuse it (Open3D: "Read PLY failed").
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from utils.fileio import atomic_write_bytes
from utils.vis import anomaly_colours

__all__ = ["write_anomaly_cloud"]

LOGGER = logging.getLogger(__name__)

_VERTEX = np.dtype([
    ("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("anomaly", "<f4"),
])


def _check(xyz: np.ndarray, anomaly_map: np.ndarray) -> None:
    """ValueError unless ``xyz`` is a finite ``(H, W, 3)`` cloud and ``anomaly_map`` a finite ``(H, W)`` map."""
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise ValueError(f"xyz: expected an organised (H, W, 3) cloud, found shape {xyz.shape}")
    if anomaly_map.shape != xyz.shape[:2]:
        raise ValueError(f"anomaly_map: expected shape {xyz.shape[:2]} like xyz (upsample the map to the cloud), "
                         f"found {anomaly_map.shape}")
    if not (np.isfinite(xyz).all() and np.isfinite(anomaly_map).all()):
        raise ValueError("xyz and anomaly_map must be finite (mark missing points with (0, 0, 0))")


def write_anomaly_cloud(
    path: str | os.PathLike[str], xyz: np.ndarray, anomaly_map: np.ndarray, vmax: float
) -> int:
    """Write the valid points of ``xyz`` coloured by ``anomaly_map`` as a binary PLY (see the module docstring).

    Args:
        path: destination ``.ply`` file (parent folders are created).
        xyz: ``(H, W, 3)`` float32 organised point cloud, metres, ``(0, 0, 0)`` = missing (float64 is rounded).
        anomaly_map: ``(H, W)`` float anomaly map at the cloud's resolution.
        vmax: map value coloured red, as on the prediction overlay (e.g. twice the decision threshold).

    Returns:
        The number of vertices written, the valid points; 0 (no file, a warning) for an all-missing cloud.

    Raises:
        ValueError: wrong shapes, non-finite values, or ``vmax`` not positive.
    """
    xyz, anomaly_map = np.asarray(xyz), np.asarray(anomaly_map)
    _check(xyz, anomaly_map)
    valid = (xyz[..., 0] != 0) | (xyz[..., 1] != 0) | (xyz[..., 2] != 0)  # (H, W): not (0, 0, 0)
    if not valid.any():
        LOGGER.warning("no PLY written to %s: the cloud has no valid point (all (0, 0, 0))", path)
        return 0
    points, values = xyz[valid], anomaly_map[valid].astype(np.float32)  # (N, 3), (N,) in row-major pixel order
    vertices = np.empty(len(values), dtype=_VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    colours = anomaly_colours(values, vmax)  # (N, 3) RGB
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = colours[:, channel]
    vertices["anomaly"] = values
    comments = ["xyz in metres; anomaly = anomaly-map value", f"colour: JET, 0 blue to {vmax:.6g} red"]
    buffer = io.BytesIO()
    PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<", comments=comments).write(buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return len(vertices)
