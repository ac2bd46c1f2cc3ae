"""End-to-end runs of tools/train_val.py on a tiny synthetic set (real files, real timm backbone)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import yaml

from datasets import RGBDDataset, load_meta, read_meta
from models.model_helper import build_model
from tools.train_val import main
from utils.config import load_config

STEPS = [["ball", "box"], ["cone"], ["ring"]]
METRIC_KEYS = {"i_auroc", "p_auroc", "aupro_30", "aupro_01"}


def run(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_root, make_config):
    """One 3-step run shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("full")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(make_config(tiny_root, STEPS)))
    assert run("--config", config, "--output", folder / "out") == 0
    return config, folder / "out"


def test_full_run_writes_results_schema(full_run):
    _, out = full_run
    results = json.loads((out / "results.json").read_text())
    assert results["classes"] == ["ball", "box", "cone", "ring"]
    assert [s["classes"] for s in results["steps"]] == STEPS
    assert set(results["steps"][1]["per_class"]) == {"ball", "box", "cone"}
    assert METRIC_KEYS | {f"rgb.{k}" for k in METRIC_KEYS} | {f"depth.{k}" for k in METRIC_KEYS} <= set(results["R"])
    r_iauroc = results["R"]["i_auroc"]
    assert len(r_iauroc) == 3 and all(len(row) == 4 for row in r_iauroc)
    assert r_iauroc[0][2] is None and r_iauroc[0][3] is None and r_iauroc[1][3] is None
    assert all(v is not None for v in r_iauroc[2])
    assert METRIC_KEYS <= set(results["forgetting"])
    assert results["final"] == results["steps"][-1]["mean"]
    assert all(d is not None and d > 0 for d in results["drift"])
    assert max(results["drift"][1:]) <= 0.1 / 0.05 + 1e-6  # iuf (the base config's): within clip / alpha
    for value in results["final"].values():
        assert value is None or 0.0 <= value <= 1.0
    assert "I-AUROC" in (out / "results.md").read_text()
    for step in range(3):
        assert (out / f"step_{step}" / "ckpt.pth").is_file()
        assert list((out / f"step_{step}" / "vis").glob("*.png"))
    assert (out / "config.yaml").is_file()


def test_step_by_step_equals_all_steps(full_run, tmp_path):
    config, out = full_run
    step_out = tmp_path / "by_step"
    for step in range(3):
        assert run("--config", config, "--output", step_out, "--step", step) == 0
    full = json.loads((out / "results.json").read_text())
    by_step = json.loads((step_out / "results.json").read_text())
    assert by_step == full


def test_evaluate_reproduces_step_metrics(full_run):
    config, out = full_run
    assert run("--config", config, "--output", out, "--evaluate") == 0
    again = json.loads((out / "step_2" / "metrics_evaluate.json").read_text())
    original = json.loads((out / "step_2" / "metrics.json").read_text())
    for name, metrics in original["per_class"].items():
        for key, value in metrics.items():
            other = again["per_class"][name][key]
            assert (value is None and other is None) or math.isclose(value, other, abs_tol=1e-6), (name, key)


def test_missing_previous_checkpoint_is_clear_error(write_config, tmp_path, capsys):
    config = write_config(STEPS)
    assert run("--config", config, "--output", tmp_path / "empty", "--step", 2) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "step_1/ckpt.pth" in err and "--step 1" in err


def test_unknown_config_key_names_key(write_config, tmp_path, capsys):
    config = write_config(STEPS, epoch=3)
    assert run("--config", config, "--output", tmp_path / "o") == 2
    assert "unknown config key 'trainer.epoch'; did you mean 'trainer.epochs'" in capsys.readouterr().err


def test_finished_run_is_not_overwritten(full_run, capsys):
    config, out = full_run
    before = (out / "results.json").read_bytes()
    assert run("--config", config, "--output", out) == 2
    assert "already holds step 0" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before


def test_overwrite_from_step_removes_later_steps(full_run, tmp_path):
    config, out = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert run("--config", config, "--output", copy, "--step", 1, "--overwrite") == 0
    assert not (copy / "step_2").exists()  # built on the old step 1: must not survive
    assert len(json.loads((copy / "results.json").read_text())["steps"]) == 2


def test_checkpoint_of_other_class_order_is_refused(full_run, tmp_path, tiny_root, make_config, capsys):
    _, out = full_run
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(make_config(tiny_root, [["box", "ball"], ["cone"], ["ring"]])))
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert run("--config", other, "--output", copy, "--step", 1, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "learned classes ['ball', 'box'], but steps 0..0 of this config have ['box', 'ball']" in err
    assert not (copy / "results.json").exists()  # the old run's steps 1-2 are gone: so are its results


def test_resume_of_one_step_keeps_the_whole_runs_results(full_run, tmp_path):
    config, out = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert run("--config", config, "--output", copy, "--step", 1, "--resume") == 0
    assert json.loads((copy / "results.json").read_text()) == json.loads((out / "results.json").read_text())


@pytest.mark.parametrize(
    ("trainer", "code", "message"),
    [
        ({"lr": 5e-4}, 2, "config.yaml): trainer.lr: 0.001 -> 0.0005; resume with the config it was started with"),
        ({"save_every_epochs": 1}, 0, None),  # keys that do not change the results may differ
    ],
)
def test_resume_with_another_config(full_run, tmp_path, tiny_root, make_config, capsys, trainer, code, message):
    _, out = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(make_config(tiny_root, STEPS, **trainer)))
    assert run("--config", other, "--output", copy, "--resume") == code
    if message:
        assert message in capsys.readouterr().err
    assert json.loads((copy / "results.json").read_text()) == json.loads((out / "results.json").read_text())


def test_resume_from_a_partial_step_of_other_classes_is_refused(full_run, tmp_path, capsys):
    config, out = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    payload = torch.load(copy / "step_1" / "ckpt.pth", weights_only=False)
    payload["state"]["classes"] = ["ball", "box", "ring"]
    torch.save(payload, copy / "step_1" / "last.pth")  # as if killed while training another step 1
    (copy / "step_1" / "ckpt.pth").unlink()
    assert run("--config", config, "--output", copy, "--step", 1, "--resume") == 2
    assert "was training classes ['ball', 'box', 'ring'], but step 1 of this config gives" in capsys.readouterr().err


def test_each_step_stores_held_out_normal_scores(full_run):
    _, out = full_run
    learned: list[str] = []
    for step, classes in enumerate(STEPS):
        learned += classes
        state = torch.load(out / f"step_{step}" / "ckpt.pth", weights_only=True)["state"]
        assert sorted(state["normal_scores"]) == sorted(learned)  # earlier classes keep their statistics
        for name in classes:
            stats = state["normal_scores"][name]
            assert stats["n"] == 1  # 10 % of 8 training normals, rounded, at least one
            assert stats["scores"] == sorted(stats["scores"]) and math.isfinite(stats["mean"])


@pytest.mark.parametrize(
    ("target", "args"),
    [("step_2/ckpt.pth", ["--evaluate"]), ("step_2/last.pth", ["--step", "2", "--resume"])],
)
def test_crafted_checkpoint_is_refused_and_runs_nothing(full_run, tmp_path, crafted_checkpoint, capsys, target, args):
    config, out = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    if target.endswith("last.pth"):
        (copy / "step_2" / "ckpt.pth").unlink()
        (copy / "step_2" / "metrics.json").unlink()
    marker = tmp_path / "created_by_the_pickle"
    crafted_checkpoint(copy / target, marker)
    assert run("--config", config, "--output", copy, *args) == 2
    err = capsys.readouterr().err
    assert f"refusing checkpoint {copy / target}" in err and "GLOBAL" in err
    assert not marker.exists()


def test_class_adapters_change_only_the_new_classes_adapters(tmp_path, tiny_root, make_config):
    cfg = make_config(tiny_root, [["ball", "box"], ["cone"]])
    cfg["model"]["class_adapter_rank"] = 2
    cfg["model"]["map_fusion"] = "normal_zmax"  # its statistics too: fitted once, at their class's step
    cfg["incremental"]["regularizer"] = {"type": "none"}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert run("--config", config, "--output", tmp_path / "out") == 0
    before, after = (torch.load(tmp_path / "out" / f"step_{k}" / "ckpt.pth")["model"] for k in (0, 1))
    assert set(after) - set(before) == {k for k in after if k.startswith("reconstructions.") and k.endswith(".2")}
    changed = []
    for key, old in before.items():
        new = after[key][: old.shape[0]] if after[key].dim() and after[key].shape != old.shape else after[key]
        if not torch.equal(old, new):
            changed.append(key)
    assert changed == []  # every shared weight and every row or adapter of the old classes: untouched
    new_adapters = [k for k in set(after) - set(before) if ".up." in k]
    assert any(torch.count_nonzero(after[k]) for k in new_adapters)  # the new class's adapters did train
    assert bool(after["router.fitted"].all())
    assert before["map_fusion.fitted"].tolist() == [True, True] and bool(after["map_fusion.fitted"].all())
    assert bool((after["map_fusion.std"] > 0).all())
    final = json.loads((tmp_path / "out" / "results.json").read_text())["steps"][-1]["per_class"]
    assert all(0.0 <= metrics["routing"] <= 1.0 for metrics in final.values())  # share routed to their own class


def test_feature_standardisation_fitted_on_base_step_normals_and_kept(tmp_path, tiny_root, make_config):
    cfg = make_config(tiny_root, [["ball", "box"], ["cone"]])
    cfg["model"]["feature_norm"] = "standardize"
    cfg["trainer"]["val_fraction"] = 0  # every training normal trains (none held out for thresholds)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert run("--config", config, "--output", tmp_path / "out") == 0
    states = [torch.load(tmp_path / "out" / f"step_{k}" / "ckpt.pth", weights_only=False)["model"] for k in (0, 1)]
    assert bool(states[0]["feature_norm.fitted"])
    resolved = load_config(config)
    torch.manual_seed(resolved["seed"])  # the run's backbone (random init) is built right after this seed
    model = build_model(resolved["model"], 64, 2).eval()
    records = [r for r in read_meta(tiny_root / "train.jsonl") if r["clsname"] in ("ball", "box")]
    dataset = RGBDDataset(tiny_root, records, {"ball": 0, "box": 1}, 64, model.backbone.input_mean,
                          model.backbone.input_std)
    items = [dataset[i] for i in range(len(dataset))]
    features = model.extract_features({m: torch.stack([x["inputs"][m] for x in items]) for m in ("rgb", "depth")})
    for modality, feature in features.items():
        expected = feature.transpose(0, 1).flatten(1).mean(1)
        torch.testing.assert_close(states[0][f"feature_norm.mean_{modality}"], expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(states[1][f"feature_norm.mean_{modality}"], expected, rtol=1e-4, atol=1e-5)


def test_a_class_without_usable_normal_maps_keeps_the_pooled_statistics(tmp_path, tiny_root, make_config, caplog):
    from engine.calibration import fit_map_fusion

    cfg = make_config(tiny_root, [["ball", "box", "cone"]])
    cfg["model"]["map_fusion"] = "normal_zmax"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    model = build_model(load_config(config)["model"], 64, 3)
    classes = ["ball", "box", "cone"]
    fitted = {"ball": {"rgb": (1.0, 2.0), "depth": (0.5, 1.0)}, "box": {"rgb": (1.0, 0.0), "depth": (0.5, 1.0)}}
    fit_map_fusion(model, fitted, classes, classes, 0)  # box: a constant map (std 0); cone: no training image
    assert model.map_fusion.fitted.tolist() == [True, False, False]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("class box has no usable training normal maps" in w for w in warnings)
    assert any("class cone has no usable training normal maps (no training image)" in w for w in warnings)


def test_map_statistics_come_from_each_new_class_of_the_training_images(tmp_path, tiny_root, make_config):
    from engine.calibration import normal_map_statistics, training_map_statistics
    from engine.evaluator import score_dataset

    cfg = make_config(tiny_root, [["ball", "box"]])
    cfg["model"]["map_fusion"] = "normal_zmax"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    resolved = load_config(config)
    model = build_model(resolved["model"], 64, 2).eval()
    records = load_meta(tiny_root, tiny_root, ["ball", "box"], "mvtec3d")[0]
    dataset = RGBDDataset(tiny_root, records, {"ball": 0, "box": 1}, 64, model.backbone.input_mean,
                          model.backbone.input_std)
    expected = normal_map_statistics(score_dataset(model, dataset, torch.device("cpu"), 8))  # every map at once
    fitted = training_map_statistics(model, dataset, ["box"], resolved, torch.device("cpu"))
    assert list(fitted) == ["box"]  # the step's new classes only
    for modality, (mean, std) in expected["box"].items():
        assert fitted["box"][modality] == pytest.approx((mean, std), rel=1e-5)


def test_without_held_out_normals_the_fused_map_still_has_each_class_statistics(tmp_path, tiny_root, make_config):
    cfg = make_config(tiny_root, [["ball", "box"]], val_fraction=0.0)
    cfg["model"]["map_fusion"] = "normal_zmax"
    cfg["evaluation"]["vis_per_class"] = 0
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert run("--config", config, "--output", tmp_path / "out") == 0
    state = torch.load(tmp_path / "out" / "step_0" / "ckpt.pth", weights_only=False)["model"]
    assert state["map_fusion.fitted"].tolist() == [True, True]


def test_bf16_training_and_evaluation_on_cpu_stay_close_to_fp32(tmp_path, tiny_root, make_config):
    finals = {}
    for precision in ("fp32", "bf16"):
        config = tmp_path / f"{precision}.yaml"
        config.write_text(yaml.safe_dump(make_config(tiny_root, [["ball", "box"]], precision=precision, epochs=2)))
        assert run("--config", config, "--output", tmp_path / precision) == 0
        finals[precision] = json.loads((tmp_path / precision / "results.json").read_text())["final"]
    assert set(finals["bf16"]) == set(finals["fp32"])
    for key in ("p_auroc", "rgb.p_auroc", "depth.p_auroc"):
        assert math.isfinite(finals["bf16"][key])
        assert abs(finals["bf16"][key] - finals["fp32"][key]) < 0.01, (key, finals["bf16"][key], finals["fp32"][key])


def test_object_scoring_with_model_selection_scores_footprints_only_where_maps_are_made(tmp_path, tiny_root,
                                                                                        make_config):
    from engine.run_data import RunData

    cfg = make_config(tiny_root, [["ball", "box"]], epochs=2, select="val")
    cfg["model"]["score_region"] = "object"
    cfg["evaluation"]["vis_per_class"] = 0
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(config), "--output", str(tmp_path / "run")]) == 0  # selection needs no footprint
    resolved = load_config(config)
    data = RunData(resolved, build_model(resolved["model"], 64, 2), tmp_path / "cache", torch.device("cpu"))
    data.load(["ball", "box"])
    sets = data.step_sets(0, {"ball": 0, "box": 1})
    for scored in (sets.held_out, sets.scored_train, data.test_set({"ball": 0})):
        assert "foreground" in scored[0]["inputs"]
    assert "foreground" not in sets.train[0]["inputs"] and "foreground" not in sets.val[0]["inputs"]
