"""benchmarks/profile_iteration.py times every part of a training iteration of a config."""

import yaml

from benchmarks import profile_iteration


def test_profile_iteration_reports_every_part(tmp_path, tiny_root, make_config, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_config(tiny_root, [["ball", "box"]])))
    seconds = profile_iteration.main(["--config", str(config), "--iters", "1"])
    parts = {"backbone", "neck", "conditioner (Mamba / ViT)", "MRN rgb", "MRN depth", "fusion", "loss",
             "backward + optimizer step", "whole iteration (no cache)"}
    assert parts <= set(seconds) and all(value > 0 for value in seconds.values())
    assert seconds["whole iteration (no cache)"] > seconds["backbone"] + seconds["MRN rgb"]
    assert "| cached iteration (all but backbone and neck) |" in capsys.readouterr().out
