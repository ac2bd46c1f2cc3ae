"""The evaluator: per-sample records of every map, per-class metrics against utils.metrics, NaN when undefined."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
import yaml

from datasets import RGBDDataset, read_meta
from datasets.meta import write_meta
from engine.evaluator import class_metrics, evaluate, score_dataset
from models.model_helper import build_model
from utils.config import load_config
from utils.metrics import aupro, image_auroc, pixel_auroc

CLASSES = {"ball": 0, "box": 1}


@pytest.fixture(scope="module")
def scored(tiny_root, make_config, tmp_path_factory):
    root = shutil.copytree(tiny_root, tmp_path_factory.mktemp("eval") / "data")
    write_meta(root)
    records = [r for r in read_meta(root / "test.jsonl") if r["clsname"] in CLASSES]
    dataset = RGBDDataset(root, records, CLASSES, 64)
    torch.manual_seed(0)
    config = root.parent / "config.yaml"
    config.write_text(yaml.safe_dump(make_config(root, [list(CLASSES)])))
    model = build_model(load_config(config)["model"], 64, 2)
    return model, dataset, score_dataset(model, dataset, torch.device("cpu"), 5)


def test_records_cover_every_sample_and_map(scored):
    model, dataset, records = scored
    assert [r["index"] for r in records] == list(range(len(dataset)))
    for record, meta in zip(records, dataset.records):
        assert record["clsname"] == meta["clsname"] and record["label"] == int(meta["label"])
        assert record["mask"].shape == (64, 64) and record["mask"].dtype == np.uint8
        for prefix in ("", "rgb.", "depth."):
            assert record[prefix + "map"].shape == (64, 64) and record[prefix + "map"].dtype == np.float16
            assert math.isfinite(record[prefix + "score"])
    sample = dataset[3]
    model.eval()
    with torch.no_grad():
        out = model({m: x[None] for m, x in sample["inputs"].items()})
    assert records[3]["score"] == pytest.approx(float(out["image_score"][0]), rel=1e-6)


def test_class_metrics_are_the_metric_functions_of_the_records(scored):
    _, _, records = scored
    ball = [r for r in records if r["clsname"] == "ball"]
    metrics = class_metrics(ball, "exact")
    labels = np.array([r["label"] for r in ball])
    masks = np.stack([r["mask"] for r in ball])
    for prefix in ("", "rgb.", "depth."):
        scores = np.array([r[prefix + "score"] for r in ball])
        maps = np.stack([r[prefix + "map"] for r in ball]).astype(np.float32)
        assert metrics[prefix + "i_auroc"] == pytest.approx(image_auroc(labels, scores))
        assert metrics[prefix + "p_auroc"] == pytest.approx(pixel_auroc(masks, maps))
        assert metrics[prefix + "aupro_30"] == pytest.approx(aupro(masks, maps, fpr_limit=0.3, mode="exact"))


def test_undefined_metric_is_nan_not_an_error(scored):
    _, _, records = scored
    normals_only = [r for r in records if r["clsname"] == "ball" and r["label"] == 0]
    metrics = class_metrics(normals_only, "exact")
    assert math.isnan(metrics["i_auroc"]) and math.isnan(metrics["aupro_30"])


def test_evaluate_returns_per_class_metrics_and_figures(scored, tmp_path):
    model, dataset, _ = scored
    per_class = evaluate(model, dataset, torch.device("cpu"), 8, "exact", tmp_path / "vis", 1)
    assert set(per_class) == set(CLASSES) and all(0 <= m["i_auroc"] <= 1 for m in per_class.values())
    assert len(list((tmp_path / "vis").glob("*.png"))) == len(CLASSES)
