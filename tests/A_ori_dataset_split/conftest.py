"""Fixtures for the data-preparation scripts: load a CLI module by path, a tiny dataset to process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from datasets.synthetic import make_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def load_cli():
    """Return a loader: repository-relative script path -> imported module (scripts live in non-package folders)."""

    def load(relative: str) -> ModuleType:
        path = REPO_ROOT / relative
        spec = importlib.util.spec_from_file_location(f"cli_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic classes at 48 px: 2 train, 2 validation, 2 test per class (read-only use)."""
    out = tmp_path_factory.mktemp("prep") / "Synthetic3D"
    return make_dataset(out, size=48, train_per_class=2, test_per_class=2, seed=0, classes=["box", "cone"])
