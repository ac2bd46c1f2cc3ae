"""utils/anomaly_cloud.py: the PLY read back with plyfile holds the valid points, exactly, with the map's values
and the overlay's colours; an all-missing cloud writes no file, with a warning; bad input is refused."""

import logging

import cv2
import numpy as np
import pytest
from plyfile import PlyData

from utils.anomaly_cloud import write_anomaly_cloud
from utils.vis import prediction_overlay

H, W = 24, 32


@pytest.fixture()
def scene():
    """A tilted plane with holes, a square defect mask and a map that peaks inside the mask."""
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    xyz = np.stack([0.001 * u - 0.016, 0.001 * v - 0.012, 0.5 + 0.0004 * u + rng.normal(0, 1e-4, (H, W))], axis=2)
    xyz = xyz.astype(np.float32)
    xyz[rng.random((H, W)) < 0.2] = 0.0  # missing points
    xyz[:3] = 0.0  # a missing band, as behind an object
    mask = np.zeros((H, W), dtype=bool)
    mask[10:16, 18:26] = True
    amap = (0.2 * rng.random((H, W)) + np.where(mask, 1.0, 0.0)).astype(np.float32)
    return xyz, amap, mask


def _vertices(path):
    return PlyData.read(str(path))["vertex"].data


def test_ply_holds_the_valid_points_and_map_values(tmp_path, scene):
    xyz, amap, mask = scene
    count = write_anomaly_cloud(tmp_path / "clouds" / "a.ply", xyz, amap, vmax=1.0)
    data = PlyData.read(str(tmp_path / "clouds" / "a.ply"))
    assert not data.text and data.byte_order == "<"
    vertices = data["vertex"].data
    assert [p.name for p in data["vertex"].properties] == ["x", "y", "z", "red", "green", "blue", "anomaly"]
    assert [vertices.dtype[n].str for n in vertices.dtype.names] == ["<f4"] * 3 + ["|u1"] * 3 + ["<f4"]
    valid = (xyz != 0).any(axis=2)
    assert count == len(vertices) == valid.sum() < H * W
    points = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1)
    np.testing.assert_array_equal(points, xyz[valid])  # exact: the cloud's own coordinates, row-major
    np.testing.assert_array_equal(vertices["anomaly"], amap[valid])
    hottest = np.argsort(vertices["anomaly"])[-10:]
    assert mask[valid][hottest].all()  # the map's peak lands on the defect's points
    assert [p.name for p in (tmp_path / "clouds").iterdir()] == ["a.ply"]  # no temporary file left


def test_colours_are_the_overlays(tmp_path, scene):
    xyz, amap, _ = scene
    vmax = 0.8  # the top of the map (1.2) is clipped to red, as on the overlay
    write_anomaly_cloud(tmp_path / "a.ply", xyz, amap, vmax)
    vertices = _vertices(tmp_path / "a.ply")
    colours = np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1).astype(int)
    black = np.zeros((H, W, 3), dtype=np.uint8)  # the overlay then shows half the heat colour
    overlay = cv2.imdecode(np.frombuffer(prediction_overlay(black, None, amap, "", False, vmax), np.uint8), 1)
    valid = (xyz != 0).any(axis=2)
    valid[:, :10] = False  # the (empty) corner label's black box: 8 px wide
    shown = overlay[:, :, ::-1][valid].astype(int)  # BGR -> RGB
    kept = valid[(xyz != 0).any(axis=2)]
    assert np.abs(shown - colours[kept] * 0.5).max() <= 1.0
    hottest = colours[np.argmax(vertices["anomaly"])]
    coldest = colours[np.argmin(vertices["anomaly"])]
    assert hottest[0] > 100 and hottest[2] < 50 and coldest[2] > 100 and coldest[0] < 50  # JET: red hot, blue cold


def test_all_missing_cloud_writes_no_file_and_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="utils.anomaly_cloud"):
        count = write_anomaly_cloud(tmp_path / "empty.ply", np.zeros((H, W, 3), np.float32), np.ones((H, W)), 1.0)
    assert count == 0 and "no valid point" in caplog.text and "empty.ply" in caplog.text
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("xyz_shape", "map_shape", "vmax", "message"),
    [
        ((H, W), (H, W), 1.0, "expected an organised (H, W, 3) cloud"),
        ((H, W, 3), (H // 2, W // 2), 1.0, "upsample the map to the cloud"),
        ((H, W, 3), (H, W), 0.0, "vmax must be positive"),
    ],
    ids=["flat_cloud", "small_map", "zero_vmax"],
)
def test_refusals(tmp_path, xyz_shape, map_shape, vmax, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_anomaly_cloud(tmp_path / "a.ply", np.ones(xyz_shape, np.float32), np.ones(map_shape), vmax)
    assert not list(tmp_path.iterdir())


def test_non_finite_values_are_refused(tmp_path, scene):
    xyz, amap, _ = scene
    amap[5, 5] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        write_anomaly_cloud(tmp_path / "a.ply", xyz, amap, 1.0)
