"""The MVTec AD layout (RGB only): records, grey images, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.io import write_mask, write_rgb
from datasets.meta import build_meta
from utils.errors import DataError


def make_mvtec_ad(root, classes=("bottle", "grid")):
    """Two good training images, one good and one defective test image (with its mask) per class."""
    rng = np.random.default_rng(0)
    for clsname in classes:
        for folder, name in (("train/good", "000"), ("train/good", "001"), ("test/good", "000"), ("test/crack", "000")):
            write_rgb(root / clsname / folder / f"{name}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        write_mask(root / clsname / "ground_truth" / "crack" / "000_mask.png", np.eye(16, dtype=bool))
    return root


def test_records_of_the_mvtec_ad_layout(tmp_path):
    train, test = build_meta(make_mvtec_ad(tmp_path / "ad"), "mvtec_ad")
    assert len(train) == 4 and len(test) == 4 and all("xyzname" not in r for r in train + test)
    defective = [r for r in test if r["label"]]
    assert [r["maskname"] for r in defective] == ["bottle/ground_truth/crack/000_mask.png",
                                                  "grid/ground_truth/crack/000_mask.png"]
    assert all("maskname" not in r for r in test if not r["label"])


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda r: (r / "bottle/ground_truth/crack/000_mask.png").unlink(), "missing partner of .*test/crack/000.png"),
        (lambda r: write_mask(r / "bottle/ground_truth/crack/001_mask.png", np.eye(16, dtype=bool)),
         "missing partner of .*001_mask.png"),
        (lambda r: write_rgb(r / "bottle/train/bad/000.png", np.zeros((4, 4, 3), np.uint8)), "is not 'good'"),
        (lambda r: __import__("shutil").rmtree(r / "grid/test"), "has no 'test' folder"),
    ],
)
def test_the_mvtec_ad_layout_refuses(tmp_path, corrupt, message):
    root = make_mvtec_ad(tmp_path / "ad")
    corrupt(root)
    with pytest.raises(DataError, match=message):
        build_meta(root, "mvtec_ad")
