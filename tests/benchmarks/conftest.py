"""Fixture of the benchmark-script tests: a copy of the tiny set with its meta files."""

import shutil

import pytest

from datasets.meta import write_meta


@pytest.fixture(scope="module")
def tiny_meta(tiny_root, tmp_path_factory):
    """A copy of the tiny set with train.jsonl / test.jsonl (the scripts read them; the shared set stays untouched)."""
    root = shutil.copytree(tiny_root, tmp_path_factory.mktemp("bench") / "Synthetic3D")
    write_meta(root)
    return root
