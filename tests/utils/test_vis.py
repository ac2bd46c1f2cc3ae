"""Tests of utils/vis.py: the anomaly figure layout and ImageNet de-normalisation."""

import cv2
import numpy as np
import pytest
import torch

from utils.vis import IMAGENET_MEAN, IMAGENET_STD, denormalize_image, prediction_overlay, save_anomaly_figure

H, W = 32, 40
TITLE_HEIGHT, GAP = 28, 4


@pytest.fixture()
def sample():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.random((H, W)).astype(np.float32)
    gt = np.zeros((H, W), dtype=np.uint8)
    gt[5:15, 10:20] = 1
    amap = np.linspace(0.0, 1.0, H * W, dtype=np.float32).reshape(H, W)
    return rgb, depth, gt, amap


def _panel(picture, index):
    """Panel ``index`` (0 RGB, 1 depth, 2 GT, 3 map) of a figure read with cv2 (BGR)."""
    left = index * (W + GAP)
    return picture[TITLE_HEIGHT:, left : left + W]


def test_figure_layout_and_panels(tmp_path, sample):
    rgb, depth, gt, amap = sample
    path = save_anomaly_figure(tmp_path / "figs" / "bagel_000.png", rgb, depth, gt, amap, "bagel 000")
    picture = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert picture.shape == (TITLE_HEIGHT + H, 4 * W + 3 * GAP, 3)
    np.testing.assert_array_equal(_panel(picture, 0), rgb[:, :, ::-1])
    np.testing.assert_array_equal(_panel(picture, 2)[:, :, 0], gt * 255)
    depth_panel = _panel(picture, 1)[:, :, 0].astype(int)
    assert depth_panel.min() == 0 and depth_panel.max() == 255  # scaled to the depth's own range
    assert [p.name for p in path.parent.iterdir()] == ["bagel_000.png"]  # no temporary file left


def test_map_colour_scale_and_overlay(tmp_path, sample):
    rgb, depth, gt, amap = sample
    alone = _panel(
        cv2.imread(str(save_anomaly_figure(tmp_path / "a.png", rgb, depth, gt, amap, "t", overlay=False))), 3
    )
    # JET: the smallest value is blue, the largest red (BGR)
    assert alone[0, 0, 0] > 100 and alone[0, 0, 2] < 50
    assert alone[-1, -1, 2] > 100 and alone[-1, -1, 0] < 50
    # a wider shared scale makes the largest value cooler
    wide = save_anomaly_figure(tmp_path / "b.png", rgb, depth, gt, amap, "t", vmin=0.0, vmax=2.0, overlay=False)
    assert not np.array_equal(_panel(cv2.imread(str(wide)), 3)[-1, -1], alone[-1, -1])
    blended = _panel(cv2.imread(str(save_anomaly_figure(tmp_path / "c.png", rgb, depth, gt, amap, "t"))), 3)
    expected = np.rint(0.5 * rgb[:, :, ::-1].astype(float) + 0.5 * alone.astype(float))
    assert np.abs(blended.astype(float) - expected).max() <= 1.0


@pytest.mark.parametrize(
    "depth",
    [
        np.ones((H, W, 3), dtype=np.float32),  # constant depth is fine (drawn black)
        np.full((H, W), np.nan, dtype=np.float32),
        np.zeros((H, W), dtype=np.uint8),
    ],
)
def test_figure_accepts_depth_variants_and_small_maps(tmp_path, sample, depth):
    rgb, _, gt, amap = sample
    path = save_anomaly_figure(tmp_path / "x.png", rgb, depth, gt, amap[::2, ::2], "small map")
    assert cv2.imread(str(path)).shape == (TITLE_HEIGHT + H, 4 * W + 3 * GAP, 3)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"path": "x.jpg"}, "expected a .png path"),
        ({"rgb": np.zeros((H, W, 3), dtype=np.float32)}, r"rgb: expected an \(H, W, 3\) uint8 image"),
        ({"gt": np.zeros((H, W + 1))}, f"gt: expected shape \\({H}, {W}\\) like rgb"),
        ({"depth": np.zeros((H, W, 2))}, "depth: expected shape"),
        ({"amap": np.full((H, W), np.nan)}, "amap: expected a non-empty finite"),
        ({"vmin": 1.0, "vmax": 1.0}, "expected vmin < vmax"),
    ],
)
def test_figure_rejects_bad_input(tmp_path, sample, change, match):
    rgb, depth, gt, amap = sample
    kwargs = {"path": "x.png", "rgb": rgb, "depth": depth, "gt": gt, "amap": amap, "title": "t"} | change
    kwargs["path"] = tmp_path / kwargs["path"]
    with pytest.raises(ValueError, match=match):
        save_anomaly_figure(**kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("as_tensor", [False, True])
def test_denormalize_image_inverts_imagenet_normalisation(as_tensor):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    normalised = (rgb.transpose(2, 0, 1) / 255.0 - np.reshape(IMAGENET_MEAN, (3, 1, 1))) / np.reshape(
        IMAGENET_STD, (3, 1, 1)
    )
    image = torch.from_numpy(normalised.astype(np.float32)) if as_tensor else normalised
    out = denormalize_image(image)
    assert out.dtype == np.uint8 and out.shape == (8, 6, 3)
    np.testing.assert_array_equal(out, rgb)


def test_denormalize_image_rejects_hwc():
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) image, found shape \(8, 6, 3\)"):
        denormalize_image(np.zeros((8, 6, 3)))


@pytest.mark.parametrize(("with_depth", "width"), [(False, 20), (True, 20 + 4 + 20)])
def test_prediction_overlay_panels(with_depth, width):
    rgb = np.zeros((16, 20, 3), dtype=np.uint8)
    depth = np.linspace(0, 1, 8 * 10, dtype=np.float32).reshape(8, 10) if with_depth else None
    png = prediction_overlay(rgb, depth, np.ones((16, 20)), "anomalous 1.0 / 0.5 ball", True, vmax=1.0)
    picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (16, width, 3)


@pytest.mark.parametrize(("amap", "vmax", "message"), [(np.ones((3, 3)), 1.0, "amap: expected shape"),
                                                        (np.ones((16, 20)), 0.0, "vmax must be positive")])
def test_prediction_overlay_refusals(amap, vmax, message):
    with pytest.raises(ValueError, match=message):
        prediction_overlay(np.zeros((16, 20, 3), dtype=np.uint8), None, amap, "x", False, vmax)
