from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from datasets.io import read_mask, read_rgb, read_xyz, write_mask, write_rgb, write_xyz
from utils.errors import DataError


def test_rgb_roundtrip_keeps_channel_order(tmp_path):
    rgb = np.zeros((5, 7, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    write_rgb(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgb)
    bgr = cv2.imread(str(tmp_path / "a.png"))
    assert bgr[0, 0, 2] == 200, "file is a normal PNG that other tools read as red"


@pytest.mark.parametrize("compress", [False, True])
def test_xyz_roundtrip(tmp_path, compress):
    xyz = np.random.default_rng(0).random((6, 4, 3)).astype(np.float32)
    write_xyz(tmp_path / "a.tiff", xyz, compress=compress)
    out = read_xyz(tmp_path / "a.tiff")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, xyz)


def test_read_xyz_accepts_float64(tmp_path):
    tifffile.imwrite(tmp_path / "a.tiff", np.full((3, 3, 3), 0.5), photometric="rgb")
    assert read_xyz(tmp_path / "a.tiff").dtype == np.float32


def test_mask_roundtrip(tmp_path):
    mask = np.zeros((4, 4), dtype=bool)
    mask[1, 2] = True
    write_mask(tmp_path / "m.png", mask)
    assert set(np.unique(cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED))) == {0, 255}
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


def _png(tmp_path, array):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), array)
    return path


def _tiff(tmp_path, array, **kwargs):
    path = tmp_path / "x.tiff"
    tifffile.imwrite(path, array, **kwargs)
    return path


def _truncated(tmp_path, suffix, writer):
    path = tmp_path / f"x{suffix}"
    writer(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(b"this is not an image at all")
    return path


RGB = np.full((64, 64, 3), 9, np.uint8)
XYZ = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
NAN_XYZ = XYZ.copy()
NAN_XYZ[3, 3, 2] = np.nan
INF_XYZ = XYZ.copy()
INF_XYZ[0, 0, 0] = np.inf


@pytest.mark.parametrize(
    ("reader", "make", "message"),
    [
        (read_rgb, lambda t: t / "missing.png", "not found"),
        (read_rgb, lambda t: _garbage(t, ".png"), "cannot be decoded"),
        (
            read_rgb,
            lambda t: _truncated(t, ".png", lambda p: write_rgb(p, np.full((64, 64, 3), 9, np.uint8))),
            "decoded",
        ),
        (read_rgb, lambda t: _png(t, np.zeros((4, 4, 3), np.uint16)), "8-bit"),
        (read_xyz, lambda t: t / "missing.tiff", "not found"),
        (read_xyz, lambda t: _garbage(t, ".tiff"), "cannot be read"),
        (read_xyz, lambda t: _truncated(t, ".tiff", lambda p: write_xyz(p, XYZ)), "cannot be read"),
        (read_xyz, lambda t: _tiff(t, np.zeros((4, 4, 2), np.float32), photometric="minisblack"), r"shape \(H, W, 3\)"),
        (read_xyz, lambda t: _tiff(t, np.zeros((4, 4), np.float32)), r"shape \(H, W, 3\)"),
        (read_xyz, lambda t: _tiff(t, np.zeros((4, 4, 3), np.uint8), photometric="rgb"), "float32 or float64"),
        (read_xyz, lambda t: _tiff(t, NAN_XYZ, photometric="rgb"), "NaN or inf"),
        (read_xyz, lambda t: _tiff(t, INF_XYZ, photometric="rgb"), "NaN or inf"),
        (read_mask, lambda t: t / "missing.png", "not found"),
        (read_mask, lambda t: _garbage(t, ".png"), "cannot be decoded"),
        (read_mask, lambda t: _png(t, np.zeros((4, 4, 3), np.uint8)), "single channel"),
    ],
    ids=[
        "rgb_missing",
        "rgb_garbage",
        "rgb_truncated",
        "rgb_16bit",
        "xyz_missing",
        "xyz_garbage",
        "xyz_truncated",
        "xyz_2ch",
        "xyz_1ch",
        "xyz_uint8",
        "xyz_nan",
        "xyz_inf",
        "mask_missing",
        "mask_garbage",
        "mask_3ch",
    ],
)
def test_readers_raise_data_error_naming_file(tmp_path, reader, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        reader(path)
    assert str(path) in str(info.value)


def test_a_grey_image_reads_as_three_equal_channels(tmp_path):
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4) * 9
    rgb = read_rgb(_png(tmp_path, grey))
    assert rgb.shape == (4, 4, 3) and all(np.array_equal(rgb[:, :, c], grey) for c in range(3))
