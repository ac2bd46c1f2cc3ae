from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import datasets

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_datasets_package_exports_resolve():
    for name in datasets.__all__:
        assert getattr(datasets, name) is not None, name
    assert datasets.SYNTHETIC_CLASSES == tuple(sorted(datasets.SYNTHETIC_CLASSES))
    assert datasets.RGBDDataset.__module__ == "datasets.rgbd_dataset"


def test_datasets_package_unknown_name_raises():
    with pytest.raises(AttributeError, match="no_such_name"):
        datasets.no_such_name  # noqa: B018


def test_data_preparation_modules_do_not_import_torch():
    code = "import sys; import datasets.synthetic, datasets.meta, datasets.eyecandies, datasets.preprocess; "
    code += "print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
