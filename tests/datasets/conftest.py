"""Shared data fixtures: a tiny Synthetic3D set (real on-disk format) and an index-encoded RGB-D set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.io import write_mask, write_rgb, write_xyz
from datasets.meta import build_meta
from datasets.synthetic import make_dataset

TINY = {"size": 64, "train_per_class": 4, "test_per_class": 3, "seed": 0}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 10 synthetic classes at 64 px: 4 train, 2 validation, 3 test (1 good, 2 defective) per class."""
    return make_dataset(tmp_path_factory.mktemp("synthetic") / "Synthetic3D", **TINY)


@pytest.fixture(scope="session")
def synthetic_meta(synthetic_root: Path) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` records of :func:`synthetic_root`."""
    return build_meta(synthetic_root)


def write_encoded_sample(root: Path, folder: str, index: int, size: int = 16, defective: bool = False) -> dict:
    """Write one sample whose files encode ``index``; returns its meta record.

    rgb: constant value ``10 * index + 5``; xyz: valid (z = 0.6 m) only in the first ``index + 1`` columns;
    mask (defective only): first ``index + 1`` rows.
    """
    stem = f"{index:03d}"
    rgb = np.full((size, size, 3), 10 * index + 5, dtype=np.uint8)
    xyz = np.zeros((size, size, 3), dtype=np.float32)
    xyz[:, : index + 1] = (0.01, 0.02, 0.6)
    write_rgb(root / folder / "rgb" / f"{stem}.png", rgb)
    write_xyz(root / folder / "xyz" / f"{stem}.tiff", xyz)
    clsname = folder.split("/")[0]
    record = {
        "filename": f"{folder}/rgb/{stem}.png",
        "xyzname": f"{folder}/xyz/{stem}.tiff",
        "label": int(defective),
        "label_name": "bad" if defective else "good",
        "clsname": clsname,
    }
    if defective:
        mask = np.zeros((size, size), dtype=bool)
        mask[: index + 1] = True
        write_mask(root / folder / "gt" / f"{stem}.png", mask)
        record["maskname"] = f"{folder}/gt/{stem}.png"
    return record


@pytest.fixture()
def encoded_writer():
    """:func:`write_encoded_sample`, as a fixture (test modules never import conftest)."""
    return write_encoded_sample
