"""tools/predict.py on a tiny trained run: it reproduces the evaluator, decides with stored thresholds,
writes its files (point clouds coloured by the map included), skips bad inputs without losing the others,
and refuses what it cannot trust."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
import yaml
from plyfile import PlyData

from datasets import RGBDDataset, read_meta
from datasets.io import write_xyz
from engine.evaluator import score_dataset
from engine.predictor import load_trained_run
from tools.predict import main as predict
from tools.train_val import main as train

CLASSES = ["ball", "box"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_root, make_config):
    """A 1-step run on two very different classes, trained long enough for the class head to tell them apart."""
    folder = tmp_path_factory.mktemp("predict")
    cfg = make_config(tiny_root, [CLASSES], epochs=8)
    cfg["evaluation"]["vis_per_class"] = 0
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert train(["--config", str(folder / "config.yaml"), "--output", str(folder / "run")]) == 0
    return folder / "run"


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def _tree_digest(folder: Path, skip: str) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and skip not in p.relative_to(folder).parts
    }


@pytest.fixture(scope="module")
def predicted_tests(trained_run, tiny_root):
    """Predictions on the run's own test images of its classes (default output folder, exit code)."""
    before = _tree_digest(trained_run, "predictions")
    inputs = trained_run.parent / "test_inputs"
    for name in CLASSES:
        shutil.copytree(tiny_root / name / "test", inputs / name / "test")
    code = predict(["--run", str(trained_run), "--input", str(inputs)])
    return code, trained_run / "predictions" / "test_inputs", before


def test_predict_reproduces_the_evaluators_scores_and_maps(trained_run, tiny_root, predicted_tests):
    code, out, _ = predicted_tests
    assert code == 0
    run = load_trained_run(trained_run, None, torch.device("cpu"))
    records = [r for r in read_meta(tiny_root / "test.jsonl") if r["clsname"] in CLASSES]
    dataset = RGBDDataset(tiny_root, records, {c: i for i, c in enumerate(CLASSES)}, 64,
                          run.model.backbone.input_mean, run.model.backbone.input_std)
    scored = score_dataset(run.model, dataset, torch.device("cpu"), 8)
    expected = {r["filename"]: s for r, s in zip(dataset.records, scored)}
    rows = _rows(out)
    assert len(rows) == len(expected)
    for row in rows:
        relative = Path(row["path"]).relative_to(trained_run.parent / "test_inputs").as_posix()
        record = expected[relative]
        assert row["score"] == pytest.approx(record["score"], rel=1e-5, abs=1e-6)
        assert row["score_rgb"] == pytest.approx(record["rgb.score"], rel=1e-5, abs=1e-6)
        amap = tifffile.imread(out / row["map"])
        assert amap.dtype == np.float32 and amap.shape == (64, 64)
        np.testing.assert_allclose(amap, record["map"].astype(np.float32), rtol=2e-3, atol=1e-4)  # float16 rounding


def test_predicted_class_and_decisions(predicted_tests):
    _, out, _ = predicted_tests
    rows = _rows(out)
    truth = [Path(r["path"]).parts[-5] for r in rows]  # <class>/test/<defect>/rgb/NAME.png
    accuracy = np.mean([r["class"] == t for r, t in zip(rows, truth)])
    assert accuracy >= 0.9, accuracy
    for row in rows:
        assert 0.0 < row["class_probability"] <= 1.0
        assert row["decision"] == ("anomalous" if row["score"] > row["threshold"] else "normal")


def test_output_files_and_sizes(predicted_tests, trained_run):
    code, out, before = predicted_tests
    with open(out / "predictions.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["path"] for r in table] == [r["path"] for r in _rows(out)]
    overlay = cv2.imread(str(out / table[0]["overlay"]))
    assert overlay.shape == (64, 64 + 4 + 64, 3)  # heat map over RGB | gap | depth
    assert (out / "skipped.csv").read_text().strip() == "path,reason"
    assert _tree_digest(trained_run, "predictions") == before  # nothing else in the run folder changed


def _cloud(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3)`` coordinates and ``(N,)`` anomaly values of a written PLY."""
    vertices = PlyData.read(str(path))["vertex"].data
    return np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1), vertices["anomaly"]


def test_clouds_hold_the_valid_points_coloured_by_the_map(predicted_tests):
    _, out, _ = predicted_tests
    rows = _rows(out)
    written = sorted(p.relative_to(out).as_posix() for p in (out / "clouds").rglob("*") if p.is_file())
    assert written == sorted(r["cloud"] for r in rows) and all(w.endswith(".ply") for w in written)
    for row in rows:
        xyz = tifffile.imread(row["xyz"])
        valid = (xyz != 0).any(axis=2)
        assert 0 < valid.sum() < valid.size  # the synthetic scanner leaves holes
        points, anomaly = _cloud(out / row["cloud"])
        np.testing.assert_array_equal(points, xyz[valid])  # the cloud's own coordinates, full resolution
        np.testing.assert_array_equal(anomaly, tifffile.imread(out / row["map"])[valid])  # the TIFF's map


def test_no_clouds_writes_no_ply(trained_run, tiny_root, tmp_path):
    out = tmp_path / "out"
    args = ["--run", str(trained_run), "--input", str(tiny_root / "box" / "test"), "--output", str(out)]
    assert predict([*args, "--no-clouds"]) == 0
    assert not (out / "clouds").exists()
    assert {r["cloud"] for r in _rows(out)} == {""} and len(_rows(out)) == 6


def _bad_inputs(folder: Path, good: Path) -> dict[str, str]:
    """A folder with one good pair and one broken input per row; returns broken name -> expected reason."""
    folder.mkdir(parents=True)
    shutil.copy(good, folder / "good.png")
    shutil.copy(good.parent.parent / "xyz" / f"{good.stem}.tiff", folder / "good.tiff")
    xyz = tifffile.imread(folder / "good.tiff")
    table = {
        "corrupt_png": "cannot be decoded",
        "truncated_tiff": "corrupt or truncated TIFF",
        "no_partner": "no point cloud for",
        "wrong_shape": "must have shape (H, W, 3)",
        "nan_cloud": "NaN or inf",
    }
    for name in table:
        shutil.copy(good, folder / f"{name}.png")
    (folder / "corrupt_png.png").write_bytes(b"\x89PNG not really")
    shutil.copy(folder / "good.tiff", folder / "corrupt_png.tiff")
    (folder / "truncated_tiff.tiff").write_bytes((folder / "good.tiff").read_bytes()[:200])
    tifffile.imwrite(folder / "wrong_shape.tiff", xyz[:, :, :2].copy())
    broken = xyz.copy()
    broken[3, 3, 2] = np.nan
    write_xyz(folder / "nan_cloud.tiff", broken)
    return table


def test_bad_inputs_are_skipped_with_reasons(trained_run, tiny_root, tmp_path, capsys):
    good = sorted((tiny_root / "ball" / "test" / "good" / "rgb").glob("*.png"))[0]
    table = _bad_inputs(tmp_path / "scans", good)
    out = tmp_path / "out"
    assert predict(["--run", str(trained_run), "--input", str(tmp_path / "scans"), "--output", str(out)]) == 1
    assert [Path(r["path"]).name for r in _rows(out)] == ["good.png"]
    with open(out / "skipped.csv", newline="") as handle:
        skipped = {Path(r["path"]).stem: r["reason"] for r in csv.DictReader(handle)}
    assert set(skipped) == set(table)
    for name, reason in table.items():
        assert reason in skipped[name], (name, skipped[name])
    captured = capsys.readouterr()
    assert "1 images" in captured.out and "5 skipped" in captured.out and "skipped.csv" in captured.err


def _without_thresholds(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    payload = torch.load(target / "step_0" / "ckpt.pth", weights_only=True)
    payload["state"].pop("normal_scores")  # as written before thresholds were stored
    torch.save(payload, target / "step_0" / "ckpt.pth")
    return target


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda run, tmp: (tmp / "nowhere", tmp / "in"), "run folder not found"),
        (lambda run, tmp: (_config_only(run, tmp), tmp / "in"), "holds no finished step"),
        (lambda run, tmp: (run, _mkdir(tmp / "empty")), "no RGB image"),
        (lambda run, tmp: (_without_thresholds(run, tmp / "old"), tmp / "in"), "pass --threshold"),
    ],
    ids=["missing_run", "no_finished_step", "empty_input", "old_checkpoint"],
)
def test_errors_stop_with_one_line(trained_run, tiny_root, tmp_path, capsys, setup, message):
    shutil.copytree(tiny_root / "ball" / "test" / "good", tmp_path / "in")
    run, inputs = setup(trained_run, tmp_path)
    assert predict(["--run", str(run), "--input", str(inputs), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def _config_only(run: Path, tmp: Path) -> Path:
    (tmp / "fresh").mkdir()
    shutil.copy(run / "config.yaml", tmp / "fresh" / "config.yaml")
    return tmp / "fresh"


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_old_checkpoint_predicts_with_a_given_threshold(trained_run, tiny_root, tmp_path):
    run = _without_thresholds(trained_run, tmp_path / "old")
    inputs = tiny_root / "ball" / "test" / "good"
    args = ["--run", str(run), "--input", str(inputs), "--output", str(tmp_path / "o"), "--threshold", "0"]
    assert predict(args) == 0
    assert {r["decision"] for r in _rows(tmp_path / "o")} == {"anomalous"}  # every score exceeds 0
    assert {r["threshold"] for r in _rows(tmp_path / "o")} == {0.0}


@pytest.mark.parametrize(("quantile", "warned"), [("0.95", True), ("0.4", False)])
def test_decisions_say_the_false_alarm_rate_their_thresholds_keep(trained_run, tiny_root, tmp_path, capsys,
                                                                  quantile, warned):
    held_out = load_trained_run(trained_run, None, torch.device("cpu")).normal_scores
    n = {stats["n"] for stats in held_out.values()}
    assert len(n) == 1  # the same number of held-out normals per class: one expected rate
    inputs, out = tiny_root / "ball" / "test" / "good", tmp_path / "out"
    args = ["--run", str(trained_run), "--input", str(inputs), "--output", str(out), "--quantile", quantile]
    assert predict(args) == 0
    (n,) = n
    rank = min(n, max(1, int(np.ceil((n + 1) * float(quantile)))))
    expected = 1 - rank / (n + 1)
    assert [r["false_alarm_rate"] for r in _rows(out)] == pytest.approx([expected] * len(_rows(out)))
    captured = capsys.readouterr()
    assert f"per class from {n}-{n} held-out normals: expected false-alarm rate {100 * expected:.1f}%" in captured.out
    assert ("warning: the asked false-alarm rate" in captured.err) == warned


def test_existing_output_needs_overwrite(trained_run, tiny_root, tmp_path, capsys):
    inputs, out = tiny_root / "box" / "test" / "good", tmp_path / "out"
    assert predict(["--run", str(trained_run), "--input", str(inputs), "--output", str(out)]) == 0
    first = (out / "predictions.csv").read_bytes()
    assert predict(["--run", str(trained_run), "--input", str(inputs), "--output", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    args = ["--run", str(trained_run), "--input", str(inputs), "--output", str(out), "--overwrite"]
    assert predict([*args, "--threshold", "1e9"]) == 0
    assert (out / "predictions.csv").read_bytes() != first
    assert {r["decision"] for r in _rows(out)} == {"normal"}
    assert not list(tmp_path.glob("out.*"))  # no staging or old folder left behind


def test_crafted_checkpoint_is_refused_by_predict(trained_run, tiny_root, tmp_path, crafted_checkpoint, capsys):
    run = tmp_path / "shared"
    shutil.copytree(trained_run, run)
    marker = tmp_path / "created_by_the_pickle"
    crafted_checkpoint(run / "step_0" / "ckpt.pth", marker)
    assert predict(["--run", str(run), "--input", str(tiny_root / "ball" / "test" / "good")]) == 2
    assert "refusing checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def test_single_image_input(trained_run, tiny_root, tmp_path):
    image = sorted((tiny_root / "box" / "test" / "good" / "rgb").glob("*.png"))[0]
    assert predict(["--run", str(trained_run), "--input", str(image), "--output", str(tmp_path / "one")]) == 0
    (row,) = _rows(tmp_path / "one")
    assert row["xyz"].endswith(f"xyz/{image.stem}.tiff") and (tmp_path / "one" / row["overlay"]).is_file()


def test_with_class_adapters_the_router_names_the_class(tmp_path, tiny_root, make_config):
    cfg = make_config(tiny_root, [CLASSES])
    cfg["model"]["class_adapter_rank"] = 2
    cfg["evaluation"]["vis_per_class"] = 0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert train(["--config", str(tmp_path / "config.yaml"), "--output", str(tmp_path / "run")]) == 0
    inputs = tmp_path / "inputs"
    for name in CLASSES:
        shutil.copytree(tiny_root / name / "test", inputs / name)
    assert predict(["--run", str(tmp_path / "run"), "--input", str(inputs), "--output", str(tmp_path / "out")]) == 0
    rows = _rows(tmp_path / "out")
    accuracy = np.mean([r["class"] == Path(r["path"]).relative_to(inputs).parts[0] for r in rows])
    assert accuracy >= 0.9, accuracy  # nearest class prototype of frozen features
    assert {r["class_probability"] for r in rows} == {""}  # the router gives no probability


def test_an_rgb_only_model_needs_no_point_cloud(tmp_path, tiny_root, make_config, capsys):
    cfg = make_config(tiny_root, [CLASSES])
    cfg["model"]["modalities"] = ["rgb"]
    cfg["evaluation"]["vis_per_class"] = 0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert train(["--config", str(tmp_path / "config.yaml"), "--output", str(tmp_path / "run")]) == 0
    image = sorted((tiny_root / "ball" / "test" / "good" / "rgb").glob("*.png"))[0]
    cloud = image.parent.parent / "xyz" / f"{image.stem}.tiff"
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("alone", "with_cloud", "broken_cloud", "empty_cloud"):
        shutil.copy(image, scans / f"{name}.png")  # alone: no xyz partner anywhere
    shutil.copy(cloud, scans / "with_cloud.tiff")
    (scans / "broken_cloud.tiff").write_bytes(cloud.read_bytes()[:200])
    write_xyz(scans / "empty_cloud.tiff", np.zeros((64, 64, 3), np.float32))
    args = ["--run", str(tmp_path / "run"), "--input", str(scans), "--output", str(tmp_path / "out")]
    assert predict(args) == 0  # the model needs no cloud: a broken one costs only its PLY
    logged = "".join(capsys.readouterr())  # stdout: the handlers training set up; stderr: Python's last resort
    rows = {Path(r["path"]).stem: r for r in _rows(tmp_path / "out")}
    assert rows["alone"]["xyz"] == "" and "score_depth" not in {k for k, v in rows["alone"].items() if v != ""}
    overlay = cv2.imread(str(tmp_path / "out" / rows["alone"]["overlay"]))
    assert overlay.shape == (64, 64, 3)  # the heat map over RGB only
    assert rows["alone"]["cloud"] == rows["broken_cloud"]["cloud"] == rows["empty_cloud"]["cloud"] == ""
    assert "no PLY for" in logged and "broken_cloud.png" in logged
    assert "empty_cloud.ply" in logged and "no valid point" in logged
    assert [p.name for p in (tmp_path / "out" / "clouds").iterdir()] == ["with_cloud.ply"]
    points, anomaly = _cloud(tmp_path / "out" / rows["with_cloud"]["cloud"])
    valid = (tifffile.imread(cloud) != 0).any(axis=2)
    np.testing.assert_array_equal(points, tifffile.imread(cloud)[valid])
    np.testing.assert_array_equal(anomaly, tifffile.imread(tmp_path / "out" / rows["with_cloud"]["map"])[valid])


def test_a_run_scored_on_the_object_predicts_what_its_evaluator_scores(trained_run, tiny_root, tmp_path, make_config,
                                                                      capsys):
    cfg = make_config(tiny_root, [CLASSES])
    cfg["model"]["score_region"] = "object"
    cfg["evaluation"]["vis_per_class"] = 0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert train(["--config", str(tmp_path / "config.yaml"), "--output", str(run)]) == 0
    inputs = tiny_root / "box" / "test"
    assert predict(["--run", str(run), "--input", str(inputs), "--output", str(tmp_path / "out")]) == 0
    loaded = load_trained_run(run, None, torch.device("cpu"))
    records = [r for r in read_meta(tiny_root / "test.jsonl") if r["clsname"] == "box"]
    backbone = loaded.model.backbone
    dataset = RGBDDataset(tiny_root, records, {"box": 1}, 64, backbone.input_mean, backbone.input_std, foreground=True)
    expected = {r["filename"]: s["score"] for r, s in zip(dataset.records, score_dataset(loaded.model, dataset,
                                                                                          torch.device("cpu"), 8))}
    rows = _rows(tmp_path / "out")
    assert len(rows) == len(expected) > 0
    for row in rows:
        name = Path(row["path"]).relative_to(tiny_root).as_posix()
        assert row["score"] == pytest.approx(expected[name], rel=1e-5, abs=1e-6)
    whole = shutil.copytree(trained_run, tmp_path / "whole", ignore=shutil.ignore_patterns("predictions"))
    config = yaml.safe_load((whole / "config.yaml").read_text())
    config["model"]["score_region"] = "object"  # its thresholds were fitted on whole images: refused
    (whole / "config.yaml").write_text(yaml.safe_dump(config))
    assert predict(["--run", str(whole), "--input", str(inputs), "--output", str(tmp_path / "refused")]) == 2
    assert "written by another model configuration" in capsys.readouterr().err
