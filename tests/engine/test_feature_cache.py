"""Backbone-feature cache: memory and disk modes give the model's features, disk entries are reused,
and a regenerated file gets a new key (never the features of its old content)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import yaml

from datasets import RGBDDataset, read_meta
from datasets.io import read_rgb, write_rgb
from datasets.meta import write_meta
from engine.feature_cache import build_feature_cache, cache_key
from models.model_helper import build_model
from utils.config import load_config

BACKBONE = {"name": "backbone", "kwargs": {"model_name": "resnet18", "pretrained": False}}


@pytest.fixture()
def setup(tmp_path, tiny_root, make_config):
    root = shutil.copytree(tiny_root, tmp_path / "data")
    write_meta(root)
    records = [r for r in read_meta(root / "train.jsonl") if r["clsname"] == "ball"]
    dataset = RGBDDataset(root, records, {"ball": 0}, 64)
    torch.manual_seed(0)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(make_config(root, [["ball"]])))
    model = build_model(load_config(tmp_path / "config.yaml")["model"], 64, 1).eval()

    def key(filename: str, class_id: int) -> str:
        xyz = next(r["xyzname"] for r in records if r["filename"] == filename)
        return cache_key(str(root), filename, class_id, BACKBONE, 64, ["rgb", "depth"], [root / filename, root / xyz])

    return root, dataset, model, key


def _build(model, dataset, mode, folder, key, max_gib=8.0):
    return build_feature_cache(model, dataset, torch.device("cpu"), 4, 0, mode, max_gib, folder, key, False)


def test_memory_and_disk_modes_hold_the_models_features(setup, tmp_path):
    _, dataset, model, key = setup
    memory = _build(model, dataset, "memory", tmp_path / "unused", key)
    disk = _build(model, dataset, "disk", tmp_path / "cache", key)
    assert len(memory) == len(disk) == len(dataset) and len(list((tmp_path / "cache").glob("*.pt"))) == len(dataset)
    sample = dataset[2]
    expected = model.extract_features({m: x[None] for m, x in sample["inputs"].items()})
    for cached in (memory[2], disk[2]):
        assert cached["class_id"] == 0 and torch.equal(cached["inputs"]["rgb"], sample["inputs"]["rgb"])
        for modality, feature in expected.items():
            torch.testing.assert_close(cached["features"][modality], feature[0])


def test_disk_entries_are_reused(setup, tmp_path):
    _, dataset, model, key = setup
    _build(model, dataset, "disk", tmp_path / "cache", key)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.pt")}
    _build(model, dataset, "disk", tmp_path / "cache", key)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.pt")} == stamps


def test_a_regenerated_file_is_not_served_stale_features(setup, tmp_path):
    root, dataset, model, key = setup
    first = _build(model, dataset, "disk", tmp_path / "cache", key)
    old = first[0]["features"]["rgb"].clone()
    path = root / dataset.records[0]["filename"]
    write_rgb(path, 255 - read_rgb(path))  # the file is made again, with other content
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = _build(model, dataset, "disk", tmp_path / "cache", key)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == len(dataset) + 1  # one new entry, the others reused
    assert not torch.allclose(again[0]["features"]["rgb"], old)
    sample = dataset[0]
    fresh = model.extract_features({m: x[None] for m, x in sample["inputs"].items()})["rgb"][0]
    torch.testing.assert_close(again[0]["features"]["rgb"], fresh)


@pytest.mark.parametrize(("max_gib", "expected"), [(8.0, "samples"), (1e-9, "files")])
def test_auto_mode_chooses_by_estimated_size(setup, tmp_path, max_gib, expected):
    _, dataset, model, key = setup
    cached = _build(model, dataset, "auto", tmp_path / "cache", key, max_gib)
    assert getattr(cached, expected) is not None
    assert np.isfinite(cached[0]["features"]["rgb"].numpy()).all()
