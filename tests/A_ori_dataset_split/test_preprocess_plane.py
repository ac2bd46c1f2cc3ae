from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets.io import read_xyz
from datasets.meta import build_meta
from datasets.preprocess import remove_background_tree
from utils.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cleaned(tiny_root, tmp_path_factory):
    return remove_background_tree(tiny_root, tmp_path_factory.mktemp("clean") / "out", seed=0)


def test_remove_background_tree_zeroes_table_keeps_object(tiny_root, cleaned):
    source, result = _files(tiny_root), _files(cleaned)
    assert set(source) == set(result)
    xyz_names = [name for name in source if name.endswith(".tiff")]
    assert len(xyz_names) == 2 * (2 + 2 + 2)
    for name in source:
        if not name.endswith(".tiff"):
            assert source[name] == result[name], name
    for name in xyz_names:
        before, after = read_xyz(tiny_root / name), read_xyz(cleaned / name)
        valid_before, valid_after = before[..., 2] > 0, after[..., 2] > 0
        assert not np.any(valid_after & ~valid_before)
        np.testing.assert_array_equal(after[valid_after], before[valid_after])
        assert valid_after.sum() < 0.5 * valid_before.sum(), "the table (most of the image) is removed"
        top = np.unravel_index(np.argmin(np.where(valid_before, before[..., 2], np.inf)), valid_before.shape)
        assert valid_after[top], "the object's highest point is kept"
        corners = np.concatenate([after[:4, :4, 2].ravel(), after[-4:, -4:, 2].ravel()])
        assert np.all(corners == 0)
    train, test = build_meta(cleaned)
    assert len(train) == 8 and len(test) == 4


def test_remove_background_tree_is_seeded(tiny_root, cleaned, tmp_path):
    again = remove_background_tree(tiny_root, tmp_path / "again", seed=0)
    assert _files(again) == _files(cleaned)


@pytest.mark.parametrize("where", ["same", "inside", "non_empty"])
def test_remove_background_tree_refuses_unsafe_output(tmp_path, tiny_root, where):
    out = {"same": tiny_root, "inside": tiny_root / "cleaned", "non_empty": tmp_path / "busy"}[where]
    if where == "non_empty":
        out.mkdir()
        (out / "x.txt").write_text("x")
    with pytest.raises(DataError, match="output folder"):
        remove_background_tree(tiny_root, out)
    assert not (tiny_root / "cleaned").exists()


def test_preprocess_cli_from_other_cwd_with_workers(tiny_root, cleaned, tmp_path):
    script = REPO_ROOT / "A_ori_dataset_split/MVTec_3D-AD/preprocess.py"
    out = tmp_path / "cli_out"
    run = subprocess.run(
        [sys.executable, str(script), "--root", str(tiny_root), "--out", str(out), "--workers", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert _files(out) == _files(cleaned), "worker count and cwd do not change the result"
    again = subprocess.run(
        [sys.executable, str(script), "--root", str(tiny_root), "--out", str(tiny_root)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "never in place" in again.stderr
