"""Custom/convert_rgbd.py: a depth camera's RGB + depth + intrinsics -> MVTec 3D-AD split folders."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import tifffile
import yaml

from datasets.io import read_rgb, read_xyz
from datasets.meta import build_meta
from tools import train_val

H, W = 48, 64
FX, FY, CX, CY = 80.0, 76.0, 31.5, 23.5
INTRINSICS = ["--fx", str(FX), "--fy", str(FY), "--cx", str(CX), "--cy", str(CY)]
PIXELS = [(5, 60), (20, 30), (40, 2), (47, 63)]  # (row v, column u), never a hole


@pytest.fixture(scope="module")
def convert(load_cli):
    return load_cli("A_ori_dataset_split/Custom/convert_rgbd.py")


def render_scene(seed: int, defect: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box on a tilted table seen from about 0.6 m: rgb (H, W, 3) uint8, depth (H, W) uint16 mm, 0/1 mask."""
    rng = np.random.default_rng(seed)
    v, u = np.indices((H, W))
    depth = 600.0 + 0.8 * v + rng.normal(0.0, 0.3, (H, W))
    box = (v >= 14) & (v < 36) & (u >= 18) & (u < 46)
    depth[box] -= 45.0 + rng.uniform(-2.0, 2.0)
    mask = np.zeros((H, W), np.uint8)
    if defect:
        mask[22:28, 28 + seed % 5 : 34 + seed % 5] = 1
        depth[mask > 0] -= 8.0  # a bump on the lid
    holes = rng.random((H, W)) < 0.03
    holes[:3, :6] = True  # sensor dropout at a corner
    holes[tuple(zip(*PIXELS))] = False
    depth[holes] = 0.0
    rgb = np.where(box[:, :, None], (40, 120, 200), (130, 110, 90)) + rng.integers(-12, 13, (H, W, 3))
    rgb[mask > 0] = (20, 20, 20)
    return np.clip(rgb, 0, 255).astype(np.uint8), np.round(depth).astype(np.uint16), mask


def write_camera(folder, count: int, seed: int, defect: bool = False, rgb_suffix: str = ".png"):
    """A depth camera's output: ``rgb/NNN<rgb_suffix>``, ``depth/NNN.png`` (uint16 mm) and ``masks/NNN.png`` (0/1)."""
    for sub in ("rgb", "depth", "masks"):
        (folder / sub).mkdir(parents=True)
    for index in range(count):
        rgb, depth, mask = render_scene(seed * 100 + index, defect)
        cv2.imwrite(str(folder / "rgb" / f"{index:03d}{rgb_suffix}"), rgb)
        cv2.imwrite(str(folder / "depth" / f"{index:03d}.png"), depth)
        cv2.imwrite(str(folder / "masks" / f"{index:03d}.png"), mask)
    return folder


def cli_args(cam, out, masks: bool = True) -> list[str]:
    args = ["--rgb", str(cam / "rgb"), "--depth", str(cam / "depth"), "--out", str(out)]
    return args + (["--masks", str(cam / "masks")] if masks else [])


def test_convert_rgbd_backprojects_16bit_depth_with_the_pinhole_model(tmp_path, convert):
    cam = write_camera(tmp_path / "cam", 2, seed=0, defect=True, rgb_suffix=".jpg")
    out = tmp_path / "root" / "part" / "test" / "bump"
    assert convert.main([*cli_args(cam, out), *INTRINSICS]) == 0
    listing = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert listing == ["gt/000.png", "gt/001.png", "rgb/000.png", "rgb/001.png", "xyz/000.tiff", "xyz/001.tiff"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam", "root"]  # no staging folder left

    depth = cv2.imread(str(cam / "depth" / "001.png"), cv2.IMREAD_UNCHANGED)
    xyz = read_xyz(out / "xyz" / "001.tiff")
    assert xyz.dtype == np.float32 and xyz.shape == (H, W, 3)
    for v, u in PIXELS:
        z = depth[v, u] * 0.001
        np.testing.assert_allclose(xyz[v, u], [(u - CX) * z / FX, (v - CY) * z / FY, z], rtol=1e-6)
    assert (depth == 0).sum() > 18
    np.testing.assert_array_equal(xyz[depth == 0], 0.0)
    np.testing.assert_allclose(xyz[:, :, 2][depth > 0], depth[depth > 0] * 0.001, rtol=1e-6)

    np.testing.assert_array_equal(read_rgb(out / "rgb" / "001.png"), read_rgb(cam / "rgb" / "001.jpg"))
    gt = cv2.imread(str(out / "gt" / "001.png"), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(cam / "masks" / "001.png"), cv2.IMREAD_UNCHANGED)
    assert gt.dtype == np.uint8 and set(np.unique(gt)) == {0, 255}
    np.testing.assert_array_equal(gt > 0, mask > 0)


def test_convert_rgbd_reads_float_depth_and_takes_clouds_as_is(tmp_path, convert):
    cam = write_camera(tmp_path / "cam", 3, seed=1)
    depth_dir = cam / "depth"
    for path in depth_dir.iterdir():
        path.unlink()
    depth_m = np.full((H, W), 0.5, np.float32)
    depth_m[0, :4] = (np.nan, np.inf, -1.0, 0.0)
    tifffile.imwrite(depth_dir / "000.tiff", depth_m)
    cloud = np.random.default_rng(0).uniform(0.1, 0.7, (H, W, 3))
    cloud[1, 1] = (0.1, 0.2, np.nan)
    cloud[2, 2] = (0.1, 0.2, -0.3)
    np.save(depth_dir / "001.npy", cloud)
    tifffile.imwrite(depth_dir / "002.tif", cloud.astype(np.float32), photometric="rgb")

    out = tmp_path / "out"
    convert.convert_rgbd(cam / "rgb", depth_dir, out, convert.Intrinsics(FX, FY, CX, CY), depth_scale=1.0)
    from_tiff = read_xyz(out / "xyz" / "000.tiff")
    np.testing.assert_array_equal(from_tiff[0, :4], 0.0)
    np.testing.assert_allclose(from_tiff[10, 5], [(5 - CX) * 0.5 / FX, (10 - CY) * 0.5 / FY, 0.5], rtol=1e-6)
    expected = cloud.astype(np.float32)
    expected[1, 1] = expected[2, 2] = 0.0
    np.testing.assert_array_equal(read_xyz(out / "xyz" / "001.tiff"), expected)
    np.testing.assert_array_equal(read_xyz(out / "xyz" / "002.tiff"), expected)

    (depth_dir / "000.tiff").unlink()
    (cam / "rgb" / "000.png").unlink()
    clouds_only = convert.convert_rgbd(cam / "rgb", depth_dir, tmp_path / "clouds")  # no intrinsics needed
    np.testing.assert_array_equal(read_xyz(clouds_only / "xyz" / "001.tiff"), expected)


def _write_garbage(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")


def _replace_rgb_001(cam):
    cv2.imwrite(str(cam / "rgb" / "001.png"), np.zeros((30, 40, 3), np.uint8))


def _replace_mask_001(cam):
    cv2.imwrite(str(cam / "masks" / "001.png"), np.zeros((H, W // 2), np.uint8))


def _zero_depth_001(cam):
    cv2.imwrite(str(cam / "depth" / "001.png"), np.zeros((H, W), np.uint16))


def _tiff_for_png(cam):
    (cam / "depth" / "000.png").unlink()
    _write_garbage(cam / "depth" / "000.tiff")


def _truncated_npy(cam):
    (cam / "depth" / "000.png").unlink()
    np.save(cam / "depth" / "000.npy", np.ones((H, W), np.float32))
    data = (cam / "depth" / "000.npy").read_bytes()
    (cam / "depth" / "000.npy").write_bytes(data[: len(data) // 2])


def _empty_rgb(cam):
    for path in (cam / "rgb").iterdir():
        path.unlink()


def _case(name, corrupt, fragments, intrinsics=INTRINSICS):
    return pytest.param(corrupt, intrinsics, fragments, id=name)


def _unchanged(cam):
    pass


BROKEN = [
    _case("size", _replace_rgb_001, ["rgb/001.png is 30×40 (H×W)", "but depth", "depth/001.png is 48×64"]),
    _case("mask_size", _replace_mask_001, ["rgb/001.png is 48×64", "but mask", "masks/001.png is 48×32"]),
    _case(
        "rgb_without_depth",
        lambda c: (c / "depth/001.png").unlink(),
        ["1 RGB image file(s) have no depth partner", "/depth: 001"],
    ),
    _case(
        "depth_without_rgb",
        lambda c: (c / "rgb/000.png").unlink(),
        ["1 depth file(s) have no RGB image partner", "/rgb: 000"],
    ),
    _case(
        "mask_without_rgb",
        lambda c: shutil.copy(c / "masks/000.png", c / "masks/007.png"),
        ["1 mask file(s) have no RGB image partner", "/rgb: 007"],
    ),
    _case(
        "rgb_without_mask",
        lambda c: (c / "masks/001.png").unlink(),
        ["1 RGB image file(s) have no mask partner", "/masks: 001"],
    ),
    _case(
        "two_files_one_stem",
        lambda c: shutil.copy(c / "depth/000.png", c / "depth/000.npy"),
        ["two depth files with stem '000'"],
    ),
    _case("all_zero_depth", _zero_depth_001, ["no valid depth in", "depth/001.png"]),  # after 000 was converted
    _case("empty_rgb", _empty_rgb, ["no RGB image file (.png, .jpg, .jpeg, .bmp) in"]),
    _case("no_depth_folder", lambda c: shutil.rmtree(c / "depth"), ["depth folder not found"]),
    _case("corrupt_rgb", lambda c: _write_garbage(c / "rgb/001.png"), ["cannot be decoded", "rgb/001.png"]),
    _case("corrupt_depth_png", lambda c: _write_garbage(c / "depth/001.png"), ["cannot be decoded", "depth/001.png"]),
    _case("corrupt_mask", lambda c: _write_garbage(c / "masks/001.png"), ["cannot be decoded", "masks/001.png"]),
    _case("corrupt_tiff", _tiff_for_png, ["cannot be read", "depth/000.tiff"]),
    _case("truncated_npy", _truncated_npy, ["cannot be read", "depth/000.npy"]),
    _case(
        "8bit_depth",
        lambda c: cv2.imwrite(str(c / "depth/001.png"), np.ones((H, W), np.uint8)),
        ["must be 16-bit single-channel", "depth/001.png"],
    ),
    _case("no_intrinsics", _unchanged, ["depth/000.png is a depth image", "--fx --fy --cx --cy"], []),
    _case("some_intrinsics", _unchanged, ["missing: --fy --cx --cy"], ["--fx", "80"]),
    _case("zero_focal", _unchanged, ["fx, fy > 0"], [*INTRINSICS, "--fx", "0"]),
    _case("zero_depth_scale", _unchanged, ["--depth-scale must be > 0"], [*INTRINSICS, "--depth-scale", "0"]),
]


@pytest.mark.parametrize(("corrupt", "intrinsics", "fragments"), BROKEN)
def test_convert_rgbd_refuses_broken_input_in_one_line_and_writes_nothing(
    tmp_path, convert, capsys, corrupt, intrinsics, fragments
):
    cam = write_camera(tmp_path / "cam", 2, seed=2, defect=True)
    corrupt(cam)
    out = tmp_path / "root" / "part" / "test" / "bump"
    assert convert.main([*cli_args(cam, out), *intrinsics]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    assert [p.name for p in tmp_path.iterdir()] == ["cam"]  # neither the split folder, its parents nor a staging one


def test_convert_rgbd_keeps_a_non_empty_output_folder(tmp_path, convert, capsys):
    cam = write_camera(tmp_path / "cam", 1, seed=3)
    out = tmp_path / "good"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert convert.main([*cli_args(cam, out, masks=False), *INTRINSICS]) == 2
    assert "output folder exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_converted_folders_make_a_class_that_trains(tmp_path, convert, make_config):
    root = tmp_path / "Custom"
    for split, count, seed, defect in (
        ("train/good", 6, 4, False),
        ("test/good", 2, 5, False),
        ("test/bump", 2, 6, True),
    ):
        cam = write_camera(tmp_path / split.replace("/", "_"), count, seed, defect)
        assert convert.main([*cli_args(cam, root / "part" / split, masks=defect), *INTRINSICS]) == 0
    train, test = build_meta(root)
    assert len(train) == 6 and len(test) == 4
    assert all(r["clsname"] == "part" and r["xyzname"].endswith(".tiff") for r in train + test)
    assert sorted((r["label_name"], "maskname" in r) for r in test) == [("bump", True)] * 2 + [("good", False)] * 2

    cfg = make_config(root, [["part"]])
    cfg["dataset"]["name"] = "Custom"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert train_val.main(["--config", str(config), "--output", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["classes"] == ["part"] and 0.0 <= results["final"]["i_auroc"] <= 1.0
