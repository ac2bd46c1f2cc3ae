from pathlib import Path

import pytest
import yaml

from utils.config import apply_overrides, config_differences, load_config, merge_configs, validate_config
from utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BASE = {
    "dataset": {"name": "X", "root": "/data"},
    "model": {"net": [{"name": "backbone", "type": "t", "kwargs": {"a": 1}}, {"name": "neck", "type": "n"}]},
    "incremental": {"steps": [{"classes": ["a", "b"]}, {"classes": ["c"]}]},
}


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_merge_configs_merges_named_lists_by_name():
    merged = merge_configs(BASE, {"model": {"net": [{"name": "backbone", "kwargs": {"a": 2}}, {"name": "x"}]}})
    names = [e["name"] for e in merged["model"]["net"]]
    assert names == ["backbone", "neck", "x"]
    assert merged["model"]["net"][0] == {"name": "backbone", "type": "t", "kwargs": {"a": 2}}
    assert BASE["model"]["net"][0]["kwargs"]["a"] == 1


def test_load_config_base_chain_and_opts(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    child = write(tmp_path / "child.yaml", {"_base_": "base.yaml", "trainer": {"epochs": 3}})
    cfg = load_config(child, ["trainer.lr=0.5", "model.net.backbone.kwargs.a=7", "model.modalities=[rgb]"])
    assert cfg["trainer"]["epochs"] == 3
    assert cfg["trainer"]["lr"] == 0.5
    assert cfg["model"]["net"][0]["kwargs"]["a"] == 7
    assert cfg["model"]["modalities"] == ["rgb"]
    assert cfg["trainer"]["incremental_epochs"] == 50  # schema default


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"trainer": {"epoch": 3}}, "unknown config key 'trainer.epoch'; did you mean 'trainer.epochs'"),
        ({"trainer": {"epochs": "ten"}}, "config key 'trainer.epochs': expected int, got 'ten'"),
        ({"trainer": {"epochs": True}}, "config key 'trainer.epochs': expected int"),
        ({"trainer": {"select": "test"}}, "expected one of last, val"),
        ({"incremental": {"steps": [{"classes": ["a"]}, {"classes": ["a"]}]}}, "class 'a' appears in step 0"),
        ({"incremental": {"steps": [{"classes": []}]}}, "classes' is empty"),
        ({"datset": {}}, "did you mean 'dataset'"),
        ({"dataset": {"batch_size": 0}}, "'dataset.batch_size': expected a value in 1..inf, got 0"),
        ({"trainer": {"val_fraction": 1.0}}, "'trainer.val_fraction': expected a value in 0..0.9"),
        ({"trainer": {"incremental_lr": -1.0}}, "'trainer.incremental_lr': expected a value in 0..inf"),
        ({"trainer": {"select": "val", "val_fraction": 0}}, "trainer.select: val needs held-out training normals"),
        ({"model": {"class_adapter_rank": -2}}, "'model.class_adapter_rank': expected a value in 0..inf"),
        ({"model": {"score_region": "box"}}, "'model.score_region': expected one of image, object"),
        ({"model": {"score_region": "object"}, "dataset": {"layout": "visa"}},
         "needs point clouds; dataset.layout visa"),
    ],
)
def test_validate_config_rejects_bad_values(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        validate_config(merge_configs(BASE, override))


@pytest.mark.parametrize(
    ("opt", "message"),
    [
        ("novalue", "expects key=value"),
        ("model.net.nope.type=x", "no entry named 'nope'"),
        ("dataset.name.x=1", "is a value"),
    ],
)
def test_apply_overrides_rejects_bad_paths(opt, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(BASE, [opt])


def test_load_config_missing_file_and_cycle(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="_base_ cycle"):
        load_config(tmp_path / "a.yaml")


def test_every_experiment_config_loads():
    configs = sorted((REPO / "experiments").glob("*/*/config.yaml"))
    assert len(configs) == 22
    for path in configs:
        cfg = load_config(path)
        classes = [c for s in cfg["incremental"]["steps"] for c in s["classes"]]
        assert classes == sorted(classes), path


RELEASE_EPOCHS = {"10_0_with_0_step": [1000], "9_1_with_1_step": [1000, 1000], "6_4_with_1_step": [2000, 2000],
                  "6_1_with_4_step": [2000, 1000, 500, 500, 500]}


@pytest.mark.parametrize("dataset", ["MVTec_3DAD", "Eyecandies"])
@pytest.mark.parametrize(("setting", "epochs"), RELEASE_EPOCHS.items())
def test_real_data_configs_run_the_release_update_and_schedule(dataset, setting, epochs):
    check_release_config(REPO / "experiments" / dataset / setting / "config.yaml", epochs)


def check_release_config(path, epochs):
    cfg = load_config(path)
    assert cfg["incremental"]["regularizer"] == {"type": "iuf", "alpha": 0.05, "lr": 1.0}
    assert [s["epochs"] for s in cfg["incremental"]["steps"]] == epochs
    assert (cfg["dataset"]["batch_size"], cfg["trainer"]["clip_grad_norm"]) == (24, 0.1)
    assert cfg["trainer"]["scheduler"]["step_epochs"] == 800
    return cfg


#: IUF's release, per-step epochs (its running max_epoch differenced; slips of the release as the configs say).
IUF_2D_EPOCHS = {
    ("MVTec_AD", "14_1_with_1_step"): [1601, 2899],
    ("MVTec_AD", "10_5_with_1_step"): [1901, 99],
    ("MVTec_AD", "3_3_with_4_step"): [500, 501, 199, 200, 200],
    ("MVTec_AD", "10_1_with_5_step"): [1901, 199, 200, 200, 200, 200],
    ("VisA", "11_1_with_1_step"): [1701, 599],
    ("VisA", "8_4_with_1_step"): [2000, 1000],
    ("VisA", "8_1_with_4_step"): [2000, 300, 300, 300, 201],
}


@pytest.mark.parametrize(("dataset", "setting"), IUF_2D_EPOCHS)
def test_2d_configs_are_rgb_only_with_iufs_settings(dataset, setting):
    path = REPO / "experiments" / dataset / setting / "config.yaml"
    cfg = check_release_config(path, IUF_2D_EPOCHS[dataset, setting])
    assert cfg["model"]["modalities"] == ["rgb"] and cfg["dataset"]["layout"] == dataset.lower()
    steps = [len(s["classes"]) for s in cfg["incremental"]["steps"]]
    base, size, count = (int(part) for part in setting.replace("_with_", "_").split("_")[:3])
    assert steps == [base] + [size] * count
    assert sum(steps) == {"MVTec_AD": 15, "VisA": 12}[dataset]


@pytest.mark.parametrize("epochs", [0, 1.5, True, "10"])
def test_a_step_entry_with_bad_epochs_names_the_step(tmp_path, epochs):
    write(tmp_path / "base.yaml", BASE)
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\n")
    with pytest.raises(ConfigError, match=r"incremental.steps\[0\].epochs"):
        load_config(child, [f"incremental.steps=[{{classes: [a], epochs: {epochs!r}}}]"])


def test_a_section_whose_type_changes_drops_the_old_types_options(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    (tmp_path / "iuf.yaml").write_text("_base_: base.yaml\nincremental: {regularizer: {type: iuf, alpha: 0.1}}\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: iuf.yaml\nincremental: {regularizer: {type: none}}\n")
    assert load_config(child)["incremental"]["regularizer"] == {"type": "none"}
    assert load_config(tmp_path / "iuf.yaml")["incremental"]["regularizer"] == {"type": "iuf", "alpha": 0.1, "lr": 1.0}


def test_unquoted_off_choice_means_off(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\ntrainer:\n  feature_cache: off\n")
    assert load_config(child)["trainer"]["feature_cache"] == "off"
    assert load_config(child, ["trainer.feature_cache=off"])["trainer"]["feature_cache"] == "off"


@pytest.mark.parametrize("text, expected", [("2e-3", 0.002), ("1E4", 10000.0), ("+5e-1", 0.5), ("1.0e-4", 1e-4)])
def test_exponent_floats_without_a_dot_are_numbers(tmp_path, text, expected):
    write(tmp_path / "base.yaml", BASE)
    child = tmp_path / "child.yaml"
    child.write_text(f"_base_: base.yaml\ntrainer:\n  weight_decay: {text}\n")
    assert load_config(child)["trainer"]["weight_decay"] == expected
    assert load_config(child, [f"trainer.lr={text}"])["trainer"]["lr"] == expected


def test_eyecandies_configs_use_the_converters_class_folders():
    from datasets.eyecandies import class_folder_name

    cfg = load_config(REPO / "experiments" / "Eyecandies" / "10_0_with_0_step" / "config.yaml")
    classes = cfg["incremental"]["steps"][0]["classes"]
    published = ["CandyCane", "ChocolateCookie", "ChocolatePraline", "Confetto", "GummyBear", "HazelnutTruffle",
                 "LicoriceSandwich", "Lollipop", "Marshmallow", "PeppermintCandy"]
    assert classes == [class_folder_name(name) for name in published]


@pytest.mark.parametrize(
    ("new", "ignore", "expected"),
    [
        ({"a": {"b": 1, "c": [1, 2]}, "d": "x"}, frozenset(), []),
        ({"a": {"b": 1, "c": (1, 2)}, "d": "x"}, frozenset(), []),  # a tuple saves as the same YAML list
        ({"a": {"b": 2, "c": [1, 2]}, "d": "y"}, frozenset(), ["a.b: 1 -> 2", "d: 'x' -> 'y'"]),
        ({"a": {"b": 2, "c": [1, 2]}, "d": "x"}, frozenset({"a.b"}), []),
        ({"a": {"c": [1, 3]}, "d": "x"}, frozenset(), ["a.b: 1 -> '<absent>'", "a.c: [1, 2] -> [1, 3]"]),
    ],
)
def test_config_differences(new, ignore, expected):
    assert config_differences({"a": {"b": 1, "c": [1, 2]}, "d": "x"}, new, ignore) == expected
