"""From an organised point cloud to the depth image the CNN sees (DESIGN §4, "Depth image").

Pipeline: z of the organised cloud → (offline, optional) background-plane removal → isolated-point
removal → hole filling → per-sample normalisation of the valid points to [0, 1] (near = bright). The
dataset then repeats the single channel three times and applies the ImageNet normalisation used for
RGB, so the frozen ImageNet backbone sees inputs with the statistics it was trained on.

Choices, stated once:

* valid point = ``z > 0``; ``(0, 0, 0)`` marks a missing point, as in MVTec 3D-AD.
* isolated points: a point inside a measured surface (all 8 neighbours valid) that is nearer or farther
  than every neighbour by more than :data:`ISOLATED_JUMP` (2 mm) is a scanner outlier and is dropped,
  then filled like any hole. Without this one outlier alone would set the sample's z range, rescaling
  its whole depth image, and put a bright speck at a random place of every normal image. A surface,
  however steep, has a neighbour on it, and a defect covers more than one pixel; points next to a gap
  (silhouettes, shadows) are never judged.
* hole filling: a missing pixel enclosed by valid pixels (not connected to the image border through
  missing pixels) takes the z of its nearest valid pixel; missing regions that touch the border (a
  removed background) stay missing.
* normalisation: ``(z_max - z) / (z_max - z_min)`` over the valid (and filled) pixels, exact min/max
  (no percentile clipping, so a small bump on the highest point keeps its contrast); a flat cloud
  maps to 1; missing pixels are 0.
* background plane: RANSAC on the valid points of the ``border``-pixel frame (4 mm inlier threshold),
  least-squares refit on the inliers, then every point within 5 mm of the plane is zeroed — the
  cleaning the MVTec 3D-AD literature applies. It is seeded through the ``rng`` argument and run
  offline by ``A_ori_dataset_split/MVTec_3D-AD/preprocess.py``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["ISOLATED_JUMP", "fit_plane_ransac", "remove_background_plane", "drop_isolated_points", "fill_depth_holes",
           "xyz_to_depth"]

_RANSAC_CHUNK = 100
#: Metres a point must stand out from all 8 of its neighbours (all valid), nearer or farther, to be dropped.
ISOLATED_JUMP = 0.002


def fit_plane_ransac(
    points: np.ndarray, rng: np.random.Generator, threshold: float = 0.004, iterations: int = 1000
) -> tuple[np.ndarray, float]:
    """Fit a plane ``n·p + d = 0`` to 3D points with RANSAC and a least-squares refit on the inliers.

    Args:
        points: ``(N, 3)`` points in metres, N ≥ 3.
        rng: random generator; the same state gives the same plane.
        threshold: inlier distance in metres.
        iterations: number of random 3-point hypotheses.

    Returns:
        Unit normal ``(3,)`` (oriented so that its z component is ≤ 0, i.e. towards the camera) and offset ``d``.

    Raises:
        ValueError: fewer than 3 points, or all hypotheses degenerate (collinear points).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
        raise ValueError(f"need (N, 3) points with N >= 3 to fit a plane, got shape {points.shape}")
    best_count, best_normal, best_offset = 0, None, 0.0
    for start in range(0, iterations, _RANSAC_CHUNK):
        count = min(_RANSAC_CHUNK, iterations - start)
        triplets = points[rng.integers(0, len(points), size=(count, 3))]  # K×3×3
        normals = np.cross(triplets[:, 1] - triplets[:, 0], triplets[:, 2] - triplets[:, 0])  # K×3
        norms = np.linalg.norm(normals, axis=1)
        usable = norms > 1e-12
        normals = normals[usable] / norms[usable, None]
        offsets = -np.einsum("kc,kc->k", normals, triplets[usable, 0])
        if len(normals) == 0:
            continue
        inliers = np.abs(points @ normals.T + offsets) < threshold  # N×K
        counts = inliers.sum(axis=0)
        best = int(np.argmax(counts))
        if counts[best] > best_count:
            best_count, best_normal, best_offset = int(counts[best]), normals[best], float(offsets[best])
    if best_normal is None:
        raise ValueError("every RANSAC hypothesis was degenerate (collinear points); cannot fit a plane")
    inlier_points = points[np.abs(points @ best_normal + best_offset) < threshold]
    if len(inlier_points) >= 3:
        centroid = inlier_points.mean(axis=0)
        normal = np.linalg.svd(inlier_points - centroid, full_matrices=False)[2][-1]
        best_normal, best_offset = normal, float(-normal @ centroid)
    if best_normal[2] > 0:
        best_normal, best_offset = -best_normal, -best_offset
    return best_normal, best_offset


def remove_background_plane(
    xyz: np.ndarray,
    rng: np.random.Generator,
    border: int = 10,
    fit_threshold: float = 0.004,
    remove_threshold: float = 0.005,
    iterations: int = 1000,
) -> np.ndarray:
    """Zero the points of the dominant plane seen around the image border (the table / conveyor).

    Args:
        xyz: organised cloud ``(H, W, 3)`` in metres, ``(0, 0, 0)`` = missing.
        rng: random generator for RANSAC (seeded by the caller).
        border: width in pixels of the frame whose valid points fit the plane.
        fit_threshold: RANSAC inlier distance in metres.
        remove_threshold: points closer than this to the plane are set to ``(0, 0, 0)``.
        iterations: RANSAC hypotheses.

    Returns:
        New ``float32`` cloud ``(H, W, 3)``; the input is not modified.

    Raises:
        ValueError: wrong shape, or fewer than 3 valid points in the border frame.
    """
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise ValueError(f"xyz must be (H, W, 3), got {xyz.shape}")
    height, width = xyz.shape[:2]
    frame = np.ones((height, width), dtype=bool)
    frame[border : height - border, border : width - border] = False
    valid = xyz[..., 2] > 0
    border_points = xyz[frame & valid]
    if len(border_points) < 3:
        raise ValueError(f"only {len(border_points)} valid points in the {border}-pixel border; cannot fit a plane")
    normal, offset = fit_plane_ransac(border_points, rng, threshold=fit_threshold, iterations=iterations)
    distance = np.abs(xyz.astype(np.float64) @ normal + offset)  # H×W
    out = xyz.astype(np.float32, copy=True)
    out[valid & (distance < remove_threshold)] = 0.0
    return out


def drop_isolated_points(z: np.ndarray, valid: np.ndarray, jump: float = ISOLATED_JUMP) -> np.ndarray:
    """The validity mask without isolated points (module docstring).

    Args:
        z: ``(H, W)`` depth values in metres (anything at invalid pixels).
        valid: ``(H, W)`` bool, True where ``z`` is a measured point.
        jump: metres by which a point must be nearer, or farther, than each of its 8 neighbours (all valid).

    Returns:
        ``(H, W)`` bool: ``valid`` with the isolated points set to False.
    """
    padded = np.pad(np.where(valid, z, np.nan), 1, constant_values=np.nan)
    height, width = z.shape
    shifts = [(dy, dx) for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]
    neighbours = np.stack([padded[dy : dy + height, dx : dx + width] for dy, dx in shifts])  # 8×H×W
    surrounded = ~np.isnan(neighbours).any(axis=0)
    isolated = (z < neighbours.min(axis=0) - jump) | (z > neighbours.max(axis=0) + jump)
    return valid & ~(surrounded & isolated)


def fill_depth_holes(z: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing pixels enclosed by valid ones with the value of the nearest valid pixel.

    Args:
        z: ``(H, W)`` depth values (anything at invalid pixels).
        valid: ``(H, W)`` bool, True where ``z`` is a measured point.

    Returns:
        Filled ``z`` ``(H, W)`` (a copy) and the new validity mask ``(H, W)``.
    """
    holes = ndimage.binary_fill_holes(valid) & ~valid
    z = z.copy()
    if holes.any():
        nearest = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)  # 2×H×W
        z[holes] = z[nearest[0][holes], nearest[1][holes]]
    return z, valid | holes


def xyz_to_depth(xyz: np.ndarray) -> np.ndarray:
    """Single-channel depth image of an organised cloud, normalised per sample (module docstring).

    Args:
        xyz: ``(H, W, 3)`` organised cloud in metres, ``(0, 0, 0)`` = missing.

    Returns:
        ``float32`` ``(H, W)`` in [0, 1]: 1 = nearest valid point, 0 = farthest valid point or missing.

    Raises:
        ValueError: wrong shape, or no valid point (``z > 0``) at all.
    """
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise ValueError(f"xyz must be (H, W, 3), got {xyz.shape}")
    z = xyz[..., 2].astype(np.float64)
    valid = z > 0
    if not valid.any():
        raise ValueError("point cloud has no valid point (every z <= 0; (0, 0, 0) means missing)")
    z, valid = fill_depth_holes(z, drop_isolated_points(z, valid))
    z_min, z_max = z[valid].min(), z[valid].max()
    span = z_max - z_min
    scaled = (z_max - z) / span if span > 1e-9 else np.ones_like(z)
    return np.where(valid, scaled, 0.0).astype(np.float32)
