"""The 2D benchmarks' layouts (MVTec AD, VisA; RGB only): records, refusals, and a run over each."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datasets.io import read_mask, write_mask, write_rgb
from datasets.meta import build_meta
from tests.datasets.synthetic_rgb import synthetic_rgb_samples
from tools.predict import main as predict
from tools.train_val import main as train
from utils.errors import DataError

VISA_COLUMNS = ["object", "split", "label", "image", "mask"]


def make_mvtec_ad(root, classes=("bottle", "grid")):
    """Two good training images, one good and one defective test image (with its mask) per class."""
    rng = np.random.default_rng(0)
    for clsname in classes:
        for folder, name in (("train/good", "000"), ("train/good", "001"), ("test/good", "000"), ("test/crack", "000")):
            write_rgb(root / clsname / folder / f"{name}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        write_mask(root / clsname / "ground_truth" / "crack" / "000_mask.png", np.eye(16, dtype=bool))
    return root


def mvtec_ad_copy(source: Path, target: Path, classes: list[str]) -> Path:
    """Synthetic3D's RGB images and masks in the MVTec AD layout, without any point cloud."""
    for clsname in classes:
        for split, label, name, image, mask in synthetic_rgb_samples(source, clsname):
            (target / clsname / split / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target / clsname / split / label / f"{name}.png")
            if mask is not None:
                (target / clsname / "ground_truth" / label).mkdir(parents=True, exist_ok=True)
                shutil.copy(mask, target / clsname / "ground_truth" / label / f"{name}_mask.png")
    return target


def visa_copy(source: Path, target: Path, classes: list[str]) -> Path:
    """Synthetic3D's RGB images (as JPEG) and masks (as defect ids 1, not 255) in VisA's released layout."""
    rows = []
    for clsname in classes:
        for split, _, name, image, mask in synthetic_rgb_samples(source, clsname):
            kind = "Anomaly" if mask is not None else "Normal"
            relative = f"{clsname}/Data/Images/{kind}/{name}.JPG"
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target / relative), cv2.imread(str(image)), [cv2.IMWRITE_JPEG_QUALITY, 95])
            mask_relative = ""
            if mask is not None:
                mask_relative = f"{clsname}/Data/Masks/Anomaly/{name}.png"
                (target / mask_relative).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target / mask_relative), read_mask(mask).astype(np.uint8))
            rows.append([clsname, split, "anomaly" if mask is not None else "normal", relative, mask_relative])
    write_visa_table(target, rows)
    return target


def write_visa_table(root: Path, rows: list[list[str]]) -> None:
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([VISA_COLUMNS, *rows])


def make_visa(root: Path) -> Path:
    """One class: two normal training images, one normal and one anomalous test image with an id-1 mask."""
    rng = np.random.default_rng(0)
    rows = []
    for split, label, name in (("train", "normal", "0"), ("train", "normal", "1"), ("test", "normal", "2"),
                               ("test", "anomaly", "3")):
        relative = f"pcb1/Data/Images/{label.title()}/{name}.JPG"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / relative), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        mask = ""
        if label == "anomaly":
            mask = f"pcb1/Data/Masks/Anomaly/{name}.png"
            (root / mask).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / mask), np.eye(16, dtype=np.uint8))
        rows.append(["pcb1", split, label, relative, mask])
    write_visa_table(root, rows)
    return root


def _edit_visa_row(root: Path, line: int, column: str, value: str) -> None:
    table = root / "split_csv" / "1cls.csv"
    rows = list(csv.reader(table.open()))
    rows[line - 1][VISA_COLUMNS.index(column)] = value
    write_visa_table(root, rows[1:])


def test_records_of_the_mvtec_ad_layout(tmp_path):
    train, test = build_meta(make_mvtec_ad(tmp_path / "ad"), "mvtec_ad")
    assert len(train) == 4 and len(test) == 4 and all("xyzname" not in r for r in train + test)
    defective = [r for r in test if r["label"]]
    assert [r["maskname"] for r in defective] == ["bottle/ground_truth/crack/000_mask.png",
                                                  "grid/ground_truth/crack/000_mask.png"]
    assert all("maskname" not in r for r in test if not r["label"])


def test_records_of_the_visa_layout_and_its_id_masks(tmp_path):
    root = make_visa(tmp_path / "visa")
    train, test = build_meta(root, "visa")
    assert [r["filename"] for r in train] == ["pcb1/Data/Images/Normal/0.JPG", "pcb1/Data/Images/Normal/1.JPG"]
    assert [(r["label"], r["label_name"], r.get("maskname")) for r in test] == [
        (1, "anomaly", "pcb1/Data/Masks/Anomaly/3.png"), (0, "good", None)]
    assert read_mask(root / test[0]["maskname"]).sum() == 16  # id 1 counts as defect


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda r: (r / "bottle/ground_truth/crack/000_mask.png").unlink(), "missing partner of .*test/crack/000.png"),
        (lambda r: write_mask(r / "bottle/ground_truth/crack/001_mask.png", np.eye(16, dtype=bool)),
         "missing partner of .*001_mask.png"),
        (lambda r: write_rgb(r / "bottle/train/bad/000.png", np.zeros((4, 4, 3), np.uint8)), "is not 'good'"),
        (lambda r: shutil.rmtree(r / "grid/test"), "has no 'test' folder"),
    ],
)
def test_the_mvtec_ad_layout_refuses(tmp_path, corrupt, message):
    root = make_mvtec_ad(tmp_path / "ad")
    corrupt(root)
    with pytest.raises(DataError, match=message):
        build_meta(root, "mvtec_ad")


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda r: (r / "split_csv/1cls.csv").unlink(), "no split table .*1cls.csv"),
        (lambda r: (r / "pcb1/Data/Masks/Anomaly/3.png").unlink(), "line 5: listed file .*3.png not found"),
        (lambda r: (r / "pcb1/Data/Images/Normal/1.JPG").unlink(), "line 3: listed file .*1.JPG not found"),
        (lambda r: _edit_visa_row(r, 5, "mask", ""), "line 5: an anomalous sample without a mask"),
        (lambda r: _edit_visa_row(r, 2, "split", "val"), "line 2: unknown split 'val'"),
        (lambda r: _edit_visa_row(r, 3, "label", "bad"), "line 3: unknown label 'bad'"),
        (lambda r: _edit_visa_row(r, 5, "split", "train"), "line 5: an anomalous sample in the training split"),
        (lambda r: (r / "split_csv/1cls.csv").write_text("object,split,image\n"), "missing column.*label, mask"),
    ],
)
def test_the_visa_layout_refuses(tmp_path, corrupt, message):
    root = make_visa(tmp_path / "visa")
    corrupt(root)
    with pytest.raises(DataError, match=message):
        build_meta(root, "visa")


@pytest.mark.parametrize(("layout", "copy"), [("mvtec_ad", mvtec_ad_copy), ("visa", visa_copy)])
def test_an_rgb_only_run_of_two_steps_on_a_2d_layout(tmp_path, tiny_root, make_config, layout, copy):
    """Meta, two incremental steps and, on MVTec AD, predict on a class's test folder."""
    root = copy(tiny_root, tmp_path / layout, ["ball", "box", "cone"])
    assert not list(root.rglob("*.tiff"))
    cfg = make_config(root, [["ball", "box"], ["cone"]])
    cfg["dataset"]["layout"] = layout
    cfg["model"]["modalities"] = ["rgb"]
    cfg["evaluation"]["vis_per_class"] = 0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert train(["--config", str(tmp_path / "config.yaml"), "--output", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["steps"]) == 2 and 0.0 <= results["final"]["i_auroc"] <= 1.0
    train_records = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    assert {r["clsname"] for r in train_records} == {"ball", "box", "cone"}
    if layout == "mvtec_ad":
        out = tmp_path / "predicted"
        assert predict(["--run", str(tmp_path / "run"), "--input", str(root / "cone"), "--output", str(out)]) == 0
        rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == len(list((root / "cone").glob("t*/*/*.png")))  # masks in ground_truth are no inputs
        assert {r["class"] for r in rows} <= {"ball", "box", "cone"}
