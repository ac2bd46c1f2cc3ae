from __future__ import annotations

import numpy as np
import pytest

from datasets.depth import (
    drop_isolated_points,
    fill_depth_holes,
    fit_plane_ransac,
    remove_background_plane,
    xyz_to_depth,
)


def _cloud(z: np.ndarray, focal: float = 100.0) -> np.ndarray:
    height, width = z.shape
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    xyz = np.stack([(u - width / 2) * z / focal, (v - height / 2) * z / focal, z], axis=-1)
    xyz[z <= 0] = 0.0
    return xyz.astype(np.float32)


def test_xyz_to_depth_near_is_bright_missing_is_zero():
    z = np.full((6, 6), 0.7)
    z[2:4, 2:4] = 0.6
    z[0, :] = 0.0  # a missing row touching the border stays missing
    depth = xyz_to_depth(_cloud(z))
    assert depth.dtype == np.float32 and depth.shape == (6, 6)
    np.testing.assert_allclose(depth[2:4, 2:4], 1.0)
    np.testing.assert_allclose(depth[1, 0], 0.0)
    np.testing.assert_array_equal(depth[0], 0.0)
    np.testing.assert_allclose(depth[1:], np.where(z[1:] == 0.6, 1.0, 0.0), atol=1e-6)


def test_xyz_to_depth_fills_enclosed_holes_from_neighbours():
    z = np.full((7, 7), 0.7)
    z[2:5, 2:5] = 0.65
    z[3, 3] = 0.0  # enclosed hole inside the object
    depth = xyz_to_depth(_cloud(z))
    assert depth[3, 3] == pytest.approx(1.0)


def test_xyz_to_depth_flat_cloud_is_one():
    z = np.full((4, 4), 0.5)
    z[0, 0] = 0.0
    depth = xyz_to_depth(_cloud(z))
    assert depth[0, 0] == 0.0 and np.all(depth.ravel()[1:] == 1.0)


def test_xyz_to_depth_rejects_empty_cloud():
    with pytest.raises(ValueError, match="no valid point"):
        xyz_to_depth(np.zeros((4, 4, 3), dtype=np.float32))


def _ramp_with(changes: dict[tuple[int, int], float]) -> np.ndarray:
    """A 7 x 7 surface rising 1 mm per column (a steep slope at 128 px), with some points set (0 = missing)."""
    z = 0.40 - 0.001 * np.arange(7)[None, :].repeat(7, axis=0)
    for (row, col), value in changes.items():
        z[row, col] = value
    return z


@pytest.mark.parametrize(
    ("changes", "dropped"),
    [
        ({}, False),  # the slope itself: every point has a neighbour on it
        ({(3, 3): 0.390}, True),  # a flying pixel 7 mm towards the camera
        ({(3, 3): 0.410}, True),  # ... or 13 mm away from it
        ({(3, 3): 0.3985}, False),  # 1.5 mm: within the jump of its neighbours
        ({(3, 3): 0.390, (3, 4): 0.390}, False),  # two pixels together: a structure, not an outlier
        ({(3, 3): 0.390, (2, 2): 0.0}, False),  # next to a gap (a silhouette, a shadow): never judged
    ],
    ids=["slope", "nearer", "farther", "small-step", "two-pixels", "next-to-a-gap"],
)
def test_drop_isolated_points(changes, dropped):
    z = _ramp_with(changes)
    valid = z > 0
    kept = drop_isolated_points(z, valid)
    assert kept[3, 3] != dropped
    assert np.array_equal(np.delete(kept.ravel(), 3 * 7 + 3), np.delete(valid.ravel(), 3 * 7 + 3))


def test_xyz_to_depth_ignores_an_outlier():
    z = np.full((8, 8), 0.40)
    z[2:6, 2:6] = 0.39  # a 10 mm high part
    clean = xyz_to_depth(_cloud(z))
    z[1, 6] = 0.37  # an outlier 30 mm towards the camera would otherwise become the nearest point
    np.testing.assert_array_equal(xyz_to_depth(_cloud(z)), clean)


def test_fill_depth_holes_keeps_border_connected_gaps():
    valid = np.ones((5, 5), dtype=bool)
    valid[2, 2] = False
    valid[0, 0] = False
    z = np.where(valid, 1.0, 0.0)
    filled, filled_valid = fill_depth_holes(z, valid)
    assert filled[2, 2] == 1.0 and filled_valid[2, 2]
    assert filled[0, 0] == 0.0 and not filled_valid[0, 0]


def _plane_scene(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Tilted table with 1 mm noise and a 2 cm box in the middle; returns (xyz, box mask)."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    z = 0.65 + 0.0004 * (u - size / 2) - 0.0003 * (v - size / 2) + rng.normal(0, 0.001, (size, size))
    box = np.zeros((size, size), dtype=bool)
    box[24:40, 20:44] = True
    z[box] -= 0.02
    z[5, 30] = 0.0  # a missing point in the border frame
    return _cloud(z, focal=200.0), box


def test_fit_plane_ransac_recovers_plane_despite_outliers():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.1, 0.1, size=(500, 2))
    z = 0.6 + 0.1 * xy[:, 0] - 0.05 * xy[:, 1]
    points = np.column_stack([xy, z])
    points[:100, 2] -= rng.uniform(0.02, 0.05, size=100)  # 20 % outliers above the plane
    normal, offset = fit_plane_ransac(points, np.random.default_rng(1))
    expected = np.array([0.1, -0.05, -1.0]) / np.linalg.norm([0.1, -0.05, -1.0])
    np.testing.assert_allclose(normal, expected, atol=1e-6)
    assert np.abs(points[100:] @ normal + offset).max() < 1e-9


def test_remove_background_plane_zeroes_table_keeps_object():
    xyz, box = _plane_scene(np.random.default_rng(0))
    original = xyz.copy()
    cleaned = remove_background_plane(xyz, np.random.default_rng(0))
    np.testing.assert_array_equal(xyz, original)
    valid = original[..., 2] > 0
    np.testing.assert_array_equal(cleaned[box], original[box])
    table = valid & ~box
    assert (cleaned[table][:, 2] == 0).mean() > 0.99
    assert np.all(cleaned[cleaned[..., 2] == 0] == 0)


def test_remove_background_plane_is_seeded():
    xyz, _ = _plane_scene(np.random.default_rng(3))
    first = remove_background_plane(xyz, np.random.default_rng(9), iterations=50)
    second = remove_background_plane(xyz, np.random.default_rng(9), iterations=50)
    np.testing.assert_array_equal(first, second)


def test_remove_background_plane_needs_border_points():
    xyz = np.zeros((30, 30, 3), dtype=np.float32)
    xyz[12:18, 12:18] = (0.0, 0.0, 0.6)
    with pytest.raises(ValueError, match="border"):
        remove_background_plane(xyz, np.random.default_rng(0))
