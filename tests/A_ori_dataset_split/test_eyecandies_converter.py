from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from datasets.eyecandies import EYECANDIES_FOCAL, class_folder_name, convert_eyecandies, depth_to_xyz
from datasets.io import read_mask, read_xyz
from datasets.meta import build_meta
from utils.errors import DataError

SIZE = 32
MIN_D, MAX_D = 0.3, 0.9


def _write_sample(data, idx, rng, mask=None, flat_keys=False):
    data.mkdir(parents=True, exist_ok=True)
    for k in range(6):
        cv2.imwrite(str(data / f"{idx}_image_{k}.png"), rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    depth = rng.integers(1000, 60000, size=(SIZE, SIZE)).astype(np.uint16)
    depth[5, 20] = 30000
    depth[:2, :2] = 65535  # far plane: background
    cv2.imwrite(str(data / f"{idx}_depth.png"), depth)
    info = {"min_depth": MIN_D, "max_depth": MAX_D} if flat_keys else {"normalization": {"min": MIN_D, "max": MAX_D}}
    (data / f"{idx}_info_depth.yaml").write_text(yaml.safe_dump(info))
    cv2.imwrite(str(data / f"{idx}_normals.png"), np.zeros((SIZE, SIZE, 3), np.uint8))
    (data / f"{idx}_pose.txt").write_text("\n".join(" ".join(["1", "0", "0", "0"]) for _ in range(4)))
    if mask is not None:
        cv2.imwrite(str(data / f"{idx}_mask.png"), mask)


def _fake_eyecandies(root, flat_keys=False):
    rng = np.random.default_rng(0)
    for cls in ("CandyCane", "GummyBear"):
        for idx in ("000", "001"):
            _write_sample(root / cls / "train" / "data", idx, rng, flat_keys=flat_keys)
        _write_sample(root / cls / "val" / "data", "000", rng, flat_keys=flat_keys)
        bad = np.zeros((SIZE, SIZE), np.uint8)
        bad[10:14, 3:9] = 255
        _write_sample(root / cls / "test_public" / "data", "000", rng, np.zeros((SIZE, SIZE), np.uint8), flat_keys)
        _write_sample(root / cls / "test_public" / "data", "001", rng, bad, flat_keys)
    return root


@pytest.mark.parametrize("flat_keys", [False, True])
def test_convert_eyecandies_layout_and_values(tmp_path, flat_keys):
    src = _fake_eyecandies(tmp_path / "eye", flat_keys)
    out = convert_eyecandies(src, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["candy_cane", "gummy_bear"]
    base = out / "candy_cane"
    assert sorted(p.name for p in (base / "train/good/rgb").iterdir()) == ["000.png", "001.png"]
    assert sorted(p.name for p in (base / "validation/good/xyz").iterdir()) == ["000.tiff"]
    assert sorted(p.name for p in (base / "test").iterdir()) == ["bad", "good"]
    rgb_bytes = (base / "train/good/rgb/001.png").read_bytes()
    assert rgb_bytes == (src / "CandyCane/train/data/001_image_5.png").read_bytes()

    xyz = read_xyz(base / "train/good/xyz/000.tiff")
    assert xyz.shape == (SIZE, SIZE, 3)
    z = 30000 / 65535 * (MAX_D - MIN_D) + MIN_D  # pixel row 5, column 20 by hand
    expected = [(20 - SIZE / 2) * z / 711.11, (5 - SIZE / 2) * z / 711.11, z]
    np.testing.assert_allclose(xyz[5, 20], expected, rtol=1e-6)
    np.testing.assert_array_equal(xyz[:2, :2], 0.0)
    assert np.all(xyz[2:, 2:, 2] > MIN_D - 1e-6)

    assert not read_mask(base / "test/good/gt/000.png").any()
    bad_mask = read_mask(base / "test/bad/gt/001.png")
    assert bad_mask.sum() == 24 and bad_mask[10:14, 3:9].all()
    train, test = build_meta(out)
    assert len(train) == 6 and len(test) == 4 and sum(r["label"] for r in test) == 2


def test_convert_eyecandies_image_index(tmp_path):
    src = _fake_eyecandies(tmp_path / "eye")
    out = convert_eyecandies(src, tmp_path / "out", image_index=0)
    rgb_bytes = (out / "gummy_bear/test/bad/rgb/001.png").read_bytes()
    assert rgb_bytes == (src / "GummyBear/test_public/data/001_image_0.png").read_bytes()


def test_depth_to_xyz_matches_pinhole_model():
    raw = np.array([[0, 65535], [65534, 32768]], dtype=np.uint16)
    xyz = depth_to_xyz(raw, 1.0, 2.0)
    np.testing.assert_array_equal(xyz[0, 1], 0.0)
    assert xyz[0, 0, 2] == pytest.approx(1.0)
    z = 32768 / 65535 + 1.0
    np.testing.assert_allclose(xyz[1, 1], [0.0, 0.0, z], atol=1e-7)
    np.testing.assert_allclose(xyz[1, 0], [-1 * xyz[1, 0, 2] / EYECANDIES_FOCAL, 0.0, xyz[1, 0, 2]], rtol=1e-6)


def test_class_folder_name_is_lower_snake():
    assert [class_folder_name(n) for n in ("CandyCane", "PeppermintCandy", "Lollipop", "bagel")] == [
        "candy_cane",
        "peppermint_candy",
        "lollipop",
        "bagel",
    ]


def test_convert_eyecandies_missing_info_yaml_names_file(tmp_path):
    src = _fake_eyecandies(tmp_path / "eye")
    missing = src / "GummyBear/test_public/data/001_info_depth.yaml"
    missing.unlink()
    with pytest.raises(DataError, match="not found") as info:
        convert_eyecandies(src, tmp_path / "out")
    assert str(missing) in str(info.value)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda s: (s / "CandyCane/test_public/data/000_mask.png").unlink(), "mask file not found"),
        (lambda s: (s / "CandyCane/train/data/001_image_5.png").unlink(), "image not found"),
        (lambda s: (s / "CandyCane/train/data/000_info_depth.yaml").write_text("normalization: {min: 1}"), "min, max"),
        (lambda s: cv2.imwrite(str(s / "CandyCane/train/data/000_depth.png"), np.zeros((4, 4), np.uint8)), "16-bit"),
    ],
    ids=["no_mask", "no_image", "bad_yaml", "8bit_depth"],
)
def test_convert_eyecandies_refuses_broken_files(tmp_path, corrupt, message):
    src = _fake_eyecandies(tmp_path / "eye")
    corrupt(src)
    with pytest.raises(DataError, match=message):
        convert_eyecandies(src, tmp_path / "out")


def test_convert_eyecandies_cli_reports_error(tmp_path, load_cli, capsys):
    cli = load_cli("A_ori_dataset_split/Eyecandies/convert_to_mvtec3d.py")
    assert cli.main(["--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    src = _fake_eyecandies(tmp_path / "eye")
    assert cli.main(["--root", str(src), "--out", str(tmp_path / "out"), "--image-index", "6"]) == 2
    assert cli.main(["--root", str(src), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out/candy_cane/test/bad/gt/001.png").is_file()
