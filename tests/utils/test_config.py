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
        ({"trainer": {"hflip_prob": 0.5}}, "config key 'trainer.hflip_prob' was removed"),
        ({"trainer": {"select": "val", "val_fraction": 0}}, "trainer.select: val needs held-out training normals"),
        ({"model": {"map_fusion": "normal_zmax"}, "trainer": {"val_fraction": 0}},
         "model.map_fusion: normal_zmax needs held-out training normals"),
        ({"model": {"class_adapter_rank": -2}}, "'model.class_adapter_rank': expected a value in 0..inf"),
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
    assert len(configs) == 15
    for path in configs:
        cfg = load_config(path)
        classes = [c for s in cfg["incremental"]["steps"] for c in s["classes"]]
        assert classes == sorted(classes), path


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


def test_saved_config_of_an_older_run_with_a_retired_key_at_its_neutral_value_loads(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": "X", "root": "r"}, "model": {"net": []},
                                    "trainer": {"hflip_prob": 0.0}, "incremental": {"steps": [{"classes": ["a"]}]}}))
    assert "hflip_prob" not in load_config(path)["trainer"]


def _net_config(path: Path, kwargs: dict, base: str | None = None) -> Path:
    data = {"model": {"net": [{"name": "vit", "kwargs": kwargs}]}}
    if base is None:
        data |= {"dataset": {"name": "X", "root": "r"}, "incremental": {"steps": [{"classes": ["a"]}]}}
    else:
        data["_base_"] = base
    return write(path, data)


def test_old_spellings_of_renamed_net_kwargs_load_as_the_new_names(tmp_path):
    old = load_config(_net_config(tmp_path / "old.yaml", {"depth": 4, "nhead": 2}))
    assert old["model"]["net"][0]["kwargs"] == {"num_layers": 4, "num_heads": 2}
    # A child's old spelling overrides its base's new one (renamed before the merge).
    _net_config(tmp_path / "base.yaml", {"num_layers": 4, "num_heads": 2})
    child = load_config(_net_config(tmp_path / "child.yaml", {"nhead": 8}, base="base.yaml"))
    assert child["model"]["net"][0]["kwargs"] == {"num_layers": 4, "num_heads": 8}
    # And so does an --opts override in the old spelling.
    opts = load_config(tmp_path / "base.yaml", ["model.net.vit.kwargs.nhead=16"])
    assert opts["model"]["net"][0]["kwargs"] == {"num_layers": 4, "num_heads": 16}


def test_both_spellings_of_one_kwarg_with_different_values_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="'vit' sets both nhead=2 and num_heads=4; nhead is the old name"):
        load_config(_net_config(tmp_path / "both.yaml", {"nhead": 2, "num_heads": 4}))
