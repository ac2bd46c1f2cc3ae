"""Dataset layouts: the registry, a layout written in this file alone, and an RGB-only run over it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from datasets.layouts import layout_names, layout_scanner, register_layout
from datasets.meta import build_meta, load_meta
from tests.datasets.synthetic_rgb import synthetic_rgb_samples
from tools import train_val
from utils.errors import ConfigError, DataError


@register_layout("flat_rgb_for_test")
def scan_flat_rgb(root: Path) -> tuple[list[dict], list[dict]]:
    """``<class>/<split>/<label>/NAME.png`` and ``<class>/masks/<label>/NAME.png``: RGB only, no point clouds."""
    train, test = [], []
    for image in sorted(root.glob("*/*/*/*.png")):
        clsname, split, label = image.relative_to(root).parts[:3]
        if split not in ("train", "test"):
            continue
        record = {"filename": image.relative_to(root).as_posix(), "label": int(label != "good"),
                  "label_name": label, "clsname": clsname, "split": split}
        if label != "good":
            record["maskname"] = f"{clsname}/masks/{label}/{image.name}"
        (train if split == "train" else test).append(record)
    return train, test


def flat_copy(source: Path, target: Path, classes: list[str]) -> Path:
    """The RGB images and masks of ``source`` (MVTec 3D-AD layout) in the flat layout, without any point cloud."""
    for clsname in classes:
        for split, label, name, image, mask in synthetic_rgb_samples(source, clsname):
            (target / clsname / split / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target / clsname / split / label / f"{name}.png")
            if mask is not None:
                (target / clsname / "masks" / label).mkdir(parents=True, exist_ok=True)
                shutil.copy(mask, target / clsname / "masks" / label / f"{name}.png")
    return target


def test_the_registry_knows_the_shipped_and_the_registered_layouts():
    assert {"mvtec3d", "flat_rgb_for_test"} <= set(layout_names())
    assert layout_scanner("flat_rgb_for_test") is scan_flat_rgb
    with pytest.raises(ConfigError, match="unknown layout 'mvtec_ad_typo'; valid: .*mvtec3d"):
        layout_scanner("mvtec_ad_typo")


def test_a_layout_of_this_file_builds_records_and_refuses_a_leaked_image(tmp_path, tiny_root):
    root = flat_copy(tiny_root, tmp_path / "flat", ["ball"])
    train, test = build_meta(root, "flat_rgb_for_test")
    assert train and test and all("xyzname" not in r for r in train + test)
    assert all((root / r["maskname"]).is_file() for r in test if r["label"])
    leaked = root / "ball" / "test" / "good" / "leaked.png"
    shutil.copy(root / train[0]["filename"], leaked)
    with pytest.raises(DataError, match="leaked into training"):
        build_meta(root, "flat_rgb_for_test")
    with pytest.raises(ConfigError, match="unknown layout"):
        load_meta(root, tmp_path / "meta", ["ball"], "no_such_layout")


def test_an_rgb_only_model_trains_two_steps_on_a_layout_without_point_clouds(tmp_path, tiny_root, make_config):
    root = flat_copy(tiny_root, tmp_path / "flat", ["ball", "box", "cone"])
    assert not list(root.rglob("*.tiff"))
    cfg = make_config(root, [["ball", "box"], ["cone"]])
    cfg["dataset"]["layout"] = "flat_rgb_for_test"
    cfg["model"]["modalities"] = ["rgb"]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert train_val.main(["--config", str(config), "--output", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["steps"]) == 2 and 0.0 <= results["final"]["i_auroc"] <= 1.0
    assert not any(key.startswith("depth.") for key in results["final"])
    assert list((tmp_path / "run" / "step_1").rglob("*.png"))  # figures without a depth panel
