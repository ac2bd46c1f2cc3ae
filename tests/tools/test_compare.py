"""tools/compare.py over a 2 × 2 grid on the tiny synthetic set: tables, plot, and skipping finished cells."""

from __future__ import annotations

import json

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
