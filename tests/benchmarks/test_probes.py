"""The feature probes (kNN memory bank, reconstruction network alone) run on the tiny set and report AUROCs."""

import shutil

import pytest

from benchmarks import knn_probe, reconstruction_probe
from datasets.meta import write_meta

OPTS = ["--opts", "incremental.steps=[{classes: [ball, box]}]", "dataset.image_size=64"]


@pytest.fixture(scope="module")
def tiny_meta(tiny_root, tmp_path_factory):
    """A copy of the tiny set with its meta files (the probes read them, they do not build them)."""
    root = shutil.copytree(tiny_root, tmp_path_factory.mktemp("probes") / "Synthetic3D")
    write_meta(root)
    return root


def _in_unit_interval(values) -> bool:
    return all(0.0 <= v <= 1.0 for v in values)


def test_knn_probe_scores_every_class_and_modality(tiny_meta):
    scores = knn_probe.main(["--root", str(tiny_meta), *OPTS])
    assert set(scores) == {"rgb", "depth"}
    assert all(len(v) == 2 and _in_unit_interval(v) for v in scores.values())


@pytest.mark.parametrize("modality", ["rgb", "depth"])
def test_reconstruction_probe_reports_fvu_and_aurocs(tiny_meta, modality, capsys):
    metrics = reconstruction_probe.main(
        ["--root", str(tiny_meta), "--modality", modality, "--iterations", "2", "--eval-every", "1", *OPTS]
    )
    assert metrics["fvu"] > 0
    assert _in_unit_interval(v for k, v in metrics.items() if k != "fvu") and "i_auroc" in metrics
    assert capsys.readouterr().out.count("iteration ") == 2
