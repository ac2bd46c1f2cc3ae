"""tools/compare.py over a 2 × 2 grid on the tiny synthetic set: tables, plot, and skipping finished cells."""

from __future__ import annotations

import json

import pytest
import yaml

from tools.compare import main


def test_compare_grid_writes_tables_and_skips_finished(tmp_path, tiny_root, make_config, capsys):
    setting = tmp_path / "setting.yaml"
    setting.write_text(yaml.safe_dump(make_config(tiny_root, [["ball", "box"], ["cone"]])))
    argv = ["--setting", str(setting), "--variants", "uniad,ib_iumad", "--modalities", "rgb,rgb+depth",
            "--output", str(tmp_path / "grid")]
    assert main(argv) == 0
    table = json.loads((tmp_path / "grid" / "comparison.json").read_text())
    assert set(table) == {"uniad", "ib_iumad"} and set(table["uniad"]) == {"rgb", "rgb+depth"}
    assert "depth.i_auroc" not in table["uniad"]["rgb"]["final"]
    assert "depth.i_auroc" in table["ib_iumad"]["rgb+depth"]["final"]
    markdown = (tmp_path / "grid" / "comparison.md").read_text()
    assert markdown.count("| uniad |") == 2 and "FM i_auroc" in markdown
    bank_rows = [line for line in markdown.splitlines() if line.startswith("| memory bank (kNN, no training) |")]
    assert [row.split(" | ")[1] for row in bank_rows] == ["rgb", "depth", "fused"]
    assert json.loads((tmp_path / "grid" / "memory_bank.json").read_text())["opts"] == []
    assert (tmp_path / "grid" / "comparison.png").stat().st_size > 1000
    saved = yaml.safe_load((tmp_path / "grid" / "uniad" / "rgb" / "config.yaml").read_text())
    assert saved["model"]["condition"] == "none" and saved["model"]["fusion"] == "sum"
    capsys.readouterr()
    assert main(argv) == 0  # second run: every cell is finished, nothing is trained again
    second = capsys.readouterr().out
    assert "==" not in second and "-- memory bank" not in second and "| memory bank (kNN" in second


def test_compare_unknown_variant_is_clear_error(tmp_path, tiny_root, make_config, capsys):
    setting = tmp_path / "setting.yaml"
    setting.write_text(yaml.safe_dump(make_config(tiny_root, [["ball"]])))
    assert main(["--setting", str(setting), "--variants", "nope", "--output", str(tmp_path / "g")]) == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err


def test_compare_over_seeds_gives_mean_and_std(tmp_path, tiny_root, make_config):
    setting = tmp_path / "setting.yaml"
    setting.write_text(yaml.safe_dump(make_config(tiny_root, [["ball", "box"]])))
    argv = ["--setting", str(setting), "--variants", "ib_iumad", "--modalities", "rgb+depth", "--seeds", "3,4",
            "--output", str(tmp_path / "grid"), "--no-reference"]
    assert main(argv) == 0
    cell = json.loads((tmp_path / "grid" / "comparison.json").read_text())["ib_iumad"]["rgb+depth"]
    runs = [json.loads((tmp_path / "grid" / "ib_iumad" / "rgb+depth" / f"seed_{s}" / "results.json").read_text())
            for s in (3, 4)]
    assert [yaml.safe_load((tmp_path / "grid" / "ib_iumad" / "rgb+depth" / f"seed_{s}" / "config.yaml").read_text())
            ["seed"] for s in (3, 4)] == [3, 4]
    values = [r["final"]["i_auroc"] for r in runs]
    assert cell["final"]["i_auroc"] == pytest.approx(sum(values) / 2)
    assert cell["final_std"]["i_auroc"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert set(cell["seeds"]) == {"3", "4"}
    markdown = (tmp_path / "grid" / "comparison.md").read_text()
    assert "mean ± sample std over seeds" in markdown and " ± " in markdown.splitlines()[-1]


def test_compare_bad_seeds_are_a_clear_error(tmp_path, tiny_root, make_config, capsys):
    setting = tmp_path / "setting.yaml"
    setting.write_text(yaml.safe_dump(make_config(tiny_root, [["ball"]])))
    assert main(["--setting", str(setting), "--seeds", "1,x", "--output", str(tmp_path / "g")]) == 2
    assert "--seeds: expected a comma list of integers, got '1,x'" in capsys.readouterr().err


def test_compare_over_regularizers_shares_the_base_step(tmp_path, tiny_root, make_config, capsys):
    setting = tmp_path / "setting.yaml"
    setting.write_text(yaml.safe_dump(make_config(tiny_root, [["ball", "box"], ["cone"]])))
    argv = ["--setting", str(setting), "--variants", "uniad", "--modalities", "rgb", "--regularizers", "iuf,none",
            "--output", str(tmp_path / "grid"), "--no-reference"]
    assert main(argv) == 0
    assert "-- base step of" in capsys.readouterr().out
    table = json.loads((tmp_path / "grid" / "comparison.json").read_text())
    assert set(table) == {"uniad + iuf", "uniad + none"}
    cell = tmp_path / "grid" / "uniad" / "rgb"
    first, second = (json.loads((cell / r / "results.json").read_text()) for r in ("iuf", "none"))
    assert first["steps"][0] == second["steps"][0]  # one base step
    assert first["steps"][1] != second["steps"][1]
    assert yaml.safe_load((cell / "none" / "config.yaml").read_text())["incremental"]["regularizer"] == {"type": "none"}
    assert main([*argv[:-3], "--regularizers", "none,iuf", "--output", str(tmp_path / "g2")]) == 2
    assert "list iuf first" in capsys.readouterr().err
