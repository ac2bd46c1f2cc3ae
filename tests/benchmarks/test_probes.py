"""The feature probes (kNN memory bank, reconstruction network alone) run on the tiny set and report AUROCs."""

import pytest

from benchmarks import knn_probe, reconstruction_probe

OPTS = ["--opts", "incremental.steps=[{classes: [ball, box]}]", "dataset.image_size=64"]


def _in_unit_interval(values) -> bool:
    return all(0.0 <= v <= 1.0 for v in values)


def test_knn_probe_scores_every_class_and_modality(tiny_meta):
    scores = knn_probe.main(["--root", str(tiny_meta), *OPTS])
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
