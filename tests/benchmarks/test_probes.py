"""The feature probes (kNN memory bank, reconstruction network alone) run on the tiny set and report AUROCs."""

import shutil

import pytest

from benchmarks import knn_probe, reconstruction_probe
from utils.errors import DataError

OPTS = ["--opts", "incremental.steps=[{classes: [ball, box]}]", "dataset.image_size=64"]


def _in_unit_interval(values) -> bool:
    return all(0.0 <= v <= 1.0 for v in values)


@pytest.mark.parametrize("region", ["image", "object"])
def test_knn_probe_scores_every_class_and_modality(tiny_meta, region):
    scores = knn_probe.main(["--root", str(tiny_meta), *OPTS, f"model.score_region={region}"])
    assert set(scores) == {"rgb", "depth", "fused"}
    assert all(len(v) == 2 and _in_unit_interval(v) for v in scores.values())


@pytest.mark.parametrize("modality", ["rgb", "depth"])
def test_reconstruction_probe_reports_fvu_and_aurocs(tiny_meta, modality, capsys):
    metrics = reconstruction_probe.main(
        ["--root", str(tiny_meta), "--modality", modality, "--iterations", "2", "--eval-every", "1", *OPTS]
    )
    assert metrics["fvu"] > 0
    assert _in_unit_interval(v for k, v in metrics.items() if k != "fvu") and "i_auroc" in metrics
    assert capsys.readouterr().out.count("iteration ") == 2


def test_knn_probe_reads_the_configs_root_and_builds_its_meta(tiny_root, tmp_path, capsys):
    root = shutil.copytree(tiny_root, tmp_path / "data")  # no meta files yet
    knn_probe.main(["--opts", f"dataset.root={root}", *OPTS[1:]])
    assert (root / "train.jsonl").is_file() and "ball:" in capsys.readouterr().out


def test_knn_probe_names_a_class_the_data_lacks(tiny_meta):
    with pytest.raises(DataError, match="class 'wave' has no train samples"):
        knn_probe.main(["--root", str(tiny_meta), "--opts", "incremental.steps=[{classes: [wave]}]"])
