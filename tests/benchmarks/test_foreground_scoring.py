"""benchmarks/foreground_scoring.py: peak location on hand-made maps, and the script on a tiny run scored on the
object."""

import json

import pytest
import torch
import yaml

from benchmarks import foreground_scoring
from tools.train_val import main as train


def _maps_with_peaks(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Two maps: a peak inside the left-half mask, and a peak on the right (outside it); and the masks."""
    maps = torch.zeros(2, 1, size, size)
    maps[0, 0, 8, 2] = 5.0
    maps[1, 0, 8, 13] = 5.0
    maps[1, 0, 3, 3] = 1.0
    masks = torch.zeros(2, 1, size, size)
    masks[..., : size // 2] = 1.0
    return maps, masks


def test_peaks_on_foreground():
    maps, masks = _maps_with_peaks()
    assert foreground_scoring.peaks_on_foreground(maps, masks, pool=1).tolist() == [True, False]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_meta, make_config):
    folder = tmp_path_factory.mktemp("foreground_scoring")
    cfg = make_config(tiny_meta, [["ball", "box"]])
    cfg["evaluation"]["vis_per_class"] = 0
    cfg["model"]["score_region"] = "object"  # trains, calibrates and evaluates with footprints
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert train(["--config", str(folder / "config.yaml"), "--output", str(folder / "run")]) == 0
    return folder / "run"


def test_foreground_scoring_on_a_run_scored_on_the_object(tiny_run, capsys):
    fused = json.loads((tiny_run / "results.json").read_text())["steps"][0]["mean"]["i_auroc"]
    table = foreground_scoring.main(["--run", str(tiny_run)])
    assert table["fused"]["foreground"] == pytest.approx(fused, abs=1e-6)  # the run's own evaluation, redone
    assert set(table) == {"fused", "rgb", "depth"}
    for row in table.values():
        assert set(row) == {"whole", "foreground", "normal_peaks_on_object"}
        assert all(0.0 <= value <= 1.0 for value in row.values())
    assert "| fused |" in capsys.readouterr().out
