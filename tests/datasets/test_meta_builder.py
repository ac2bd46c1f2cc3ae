from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from datasets.io import write_mask, write_rgb, write_xyz
from datasets.meta import build_meta, read_meta, write_meta
from datasets.synthetic import CLASS_NAMES
from utils.errors import DataError


@pytest.fixture()
def two_class_root(tmp_path, synthetic_root) -> Path:
    """A writable copy of two classes of the session synthetic set."""
    root = tmp_path / "root"
    for clsname in ("ball", "box"):
        shutil.copytree(synthetic_root / clsname, root / clsname)
    return root


def test_build_meta_counts_and_fields(synthetic_root, synthetic_meta):
    train, test = synthetic_meta
    assert len(train) == len(CLASS_NAMES) * (4 + 2)
    assert len(test) == len(CLASS_NAMES) * 3
    assert {r["split"] for r in train} == {"train", "validation"} and {r["split"] for r in test} == {"test"}
    assert sorted({r["clsname"] for r in train}) == list(CLASS_NAMES)
    for record in train + test:
        assert (synthetic_root / record["filename"]).is_file()
        assert (synthetic_root / record["xyzname"]).is_file()
        assert record["filename"].split("/")[0] == record["clsname"]
        assert Path(record["filename"]).stem == Path(record["xyzname"]).stem
        assert record["label"] == int(record["label_name"] != "good")
        if record["label"]:
            assert (synthetic_root / record["maskname"]).is_file()
            assert Path(record["maskname"]).stem == Path(record["filename"]).stem
        else:
            assert "maskname" not in record
    assert all(r["label"] == 0 for r in train)
    assert sum(r["label"] for r in test) == len(CLASS_NAMES) * 2


def test_write_meta_roundtrip(tmp_path, synthetic_root, synthetic_meta):
    train_path, test_path = write_meta(synthetic_root, tmp_path / "meta")
    assert read_meta(train_path) == synthetic_meta[0]
    assert read_meta(test_path) == synthetic_meta[1]
    first = json.loads(test_path.read_text().splitlines()[0])
    assert set(first) >= {"filename", "xyzname", "label", "label_name", "clsname"}


def test_build_meta_accepts_real_mvtec3d_extras(two_class_root):
    (two_class_root / "license.txt").write_text("CC BY-NC-SA 4.0")
    (two_class_root / "readme.txt").write_text("readme")
    (two_class_root / "ball" / "calibration").mkdir()
    (two_class_root / "ball" / "calibration" / "camera_parameters.json").write_text("{}")
    gt_dir = two_class_root / "ball" / "train" / "good" / "gt"
    gt_dir.mkdir()
    write_mask(gt_dir / "000.png", np.zeros((64, 64), dtype=bool))
    train, test = build_meta(two_class_root)
    assert len(train) == 12 and len(test) == 6


def _leak(root: Path) -> None:
    src = root / "ball" / "test" / "good"
    dst = root / "ball" / "train" / "good"
    shutil.copyfile(src / "rgb" / "000.png", dst / "rgb" / "900.png")
    shutil.copyfile(src / "xyz" / "000.tiff", dst / "xyz" / "900.tiff")


def _first_defect(root: Path) -> Path:
    return next(p for p in sorted((root / "box" / "test").iterdir()) if p.name != "good")


def _extra_xyz(root: Path) -> None:
    write_xyz(root / "ball" / "train" / "good" / "xyz" / "777.tiff", np.ones((4, 4, 3), dtype=np.float32))


def _rgb_without_layout(root: Path) -> None:
    write_rgb(root / "cookie" / "rgb" / "000.png", np.zeros((4, 4, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_leak, r"leaked.*train/good/rgb/900\.png|train/good/rgb/900\.png.*leaked"),
        (lambda r: (r / "ball/train/good/xyz/001.tiff").unlink(), r"missing partner.*ball/train/good/xyz/001\.tiff"),
        (lambda r: next((_first_defect(r) / "gt").iterdir()).unlink(), r"missing partner.*/gt/000\.png"),
        (_extra_xyz, r"missing partner.*777\.tiff"),
        (lambda r: shutil.rmtree(r / "box" / "test"), r"unknown layout.*box.*'test'"),
        (
            lambda r: shutil.rmtree(r / "ball" / "validation" / "good" / "xyz"),
            r"unknown layout.*validation/good.*'xyz'",
        ),
        (lambda r: shutil.rmtree(_first_defect(r) / "gt"), r"unknown layout.*'gt'"),
        (lambda r: shutil.copytree(r / "ball/train/good", r / "ball/train/crack"), r"unknown layout.*train/crack"),
        (_rgb_without_layout, r"unknown layout.*cookie"),
    ],
    ids=[
        "leak",
        "missing_xyz",
        "missing_gt",
        "xyz_without_rgb",
        "no_test",
        "no_xyz_dir",
        "no_gt_dir",
        "defect_in_train",
        "unknown_class_layout",
    ],
)
def test_build_meta_refuses(two_class_root, corrupt, message):
    corrupt(two_class_root)
    with pytest.raises(DataError, match=message):
        build_meta(two_class_root)


def test_build_meta_refuses_missing_root(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        build_meta(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("line", "message"),
    [("{not json", "not valid JSON"), ('["a"]', "JSON object"), ('{"filename": "a.png"}', "lacks key")],
)
def test_read_meta_refuses_bad_lines(tmp_path, line, message):
    path = tmp_path / "train.jsonl"
    good = {"filename": "a/rgb/0.png", "xyzname": "a/xyz/0.tiff", "label": 0, "label_name": "good", "clsname": "a"}
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(DataError, match=rf"train\.jsonl:2: .*{message}"):
        read_meta(path)
