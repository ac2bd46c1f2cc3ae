"""Tests of utils/fileio.py: atomic writes and strict JSON."""

import hashlib
import json
import os
import stat

import numpy as np
import pytest

from utils.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, file_digest, to_jsonable


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_text_creates_parents_and_overwrites(tmp_path):
    target = tmp_path / "a" / "b" / "results.md"
    assert atomic_write_text(target, "first\n") == target
    atomic_write_text(target, "second ü\n")
    assert target.read_text(encoding="utf-8") == "second ü\n"
    assert _leftovers(target.parent) == []


def test_atomic_write_bytes_round_trip(tmp_path):
    data = bytes(range(256))
    atomic_write_bytes(tmp_path / "blob.bin", data)
    assert (tmp_path / "blob.bin").read_bytes() == data


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_unserialisable_json_writes_nothing(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_new_file_permissions_follow_umask(tmp_path):
    old_umask = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o640


def test_atomic_write_json_is_strict_json(tmp_path):
    obj = {
        "classes": ("bagel", "cookie"),
        "R": np.array([[0.9, np.nan], [0.8, 0.7]]),
        "n": np.int64(3),
        "x": np.float32(0.5),
        "fm": float("nan"),
        "ok": True,
        "none": None,
    }
    atomic_write_json(tmp_path / "r.json", obj)
    text = (tmp_path / "r.json").read_text()
    loaded = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert loaded == {
        "classes": ["bagel", "cookie"],
        "R": [[0.9, None], [0.8, 0.7]],
        "n": 3,
        "x": 0.5,
        "fm": None,
        "ok": True,
        "none": None,
    }
    assert text.endswith("}\n")


@pytest.mark.parametrize(
    ("obj", "match"),
    [({"a": float("inf")}, "infinite float"), ({1: "a"}, "keys must be str, found int")],
)
def test_to_jsonable_rejects(obj, match):
    with pytest.raises(ValueError, match=match):
        to_jsonable(obj)


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_file_digest_equals_hashlib_of_the_bytes(tmp_path, algorithm):
    data = bytes(range(256)) * 5000  # more than one 1 MiB block
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_digest(path, algorithm) == hashlib.new(algorithm, data).hexdigest()
