from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets.io import read_mask, read_rgb, read_xyz
from datasets.meta import build_meta
from datasets.parts3d import (
    CLASS_NAMES,
    DEFECT_KINDS,
    DEFECT_MODALITIES,
    GENERATION_FILE,
    Rig,
    make_parts_dataset,
    planned_test_labels,
    render_sample,
    sample_rng,
)
from datasets.parts3d.textures import CLASS_FINISHES, PHOTOS, photo
from utils.errors import ConfigError, DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE = 48
SMALL = {"size": SIZE, "train_per_class": 3, "test_per_class": 4, "classes": ["bolt", "pebble"]}
VALIDATION = 2  # max(2, 3 // 10)
#: Valid points of a defect stand at least this high above the table (defects keep 1.5 mm clear of it; the
#: scanner's depth noise is at most 0.75 mm).
MIN_DEFECT_HEIGHT = 0.5e-3


def _digests(root: Path, prefix: str = "") -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha1(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix().startswith(prefix)
    }


def _valid(xyz: np.ndarray) -> np.ndarray:
    return np.any(xyz != 0, axis=-1)


@pytest.fixture(scope="module")
def parts_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Parts3D classes at 48 px: 3 train, 2 validation, 4 test (1 good, scratch, deformation, hole)."""
    return make_parts_dataset(tmp_path_factory.mktemp("parts3d") / "Parts3D", seed=0, **SMALL)


def test_parts3d_layout_is_mvtec3d(parts_root):
    train, test = build_meta(parts_root, layout="mvtec3d")
    assert len(train) == 2 * (3 + VALIDATION) and len(test) == 2 * 4
    expected_labels = sorted(set(planned_test_labels(4)))
    for clsname in SMALL["classes"]:
        assert sorted(p.name for p in (parts_root / clsname).iterdir()) == ["test", "train", "validation"]
        assert sorted(p.name for p in (parts_root / clsname / "test").iterdir()) == expected_labels
        stems = [p.name for p in sorted((parts_root / clsname / "train/good/xyz").iterdir())]
        assert stems == ["000.tiff", "001.tiff", "002.tiff"]
    assert {r["label_name"] for r in test} == set(expected_labels) <= {"good", *DEFECT_KINDS}
    assert all(r["label"] == int(r["label_name"] != "good") for r in test)
    info = json.loads((parts_root / GENERATION_FILE).read_text())
    assert info["seed"] == 0 and info["size"] == SIZE and info["classes"] == SMALL["classes"]
    assert info["validation_per_class"] == VALIDATION
    rgb, xyz = read_rgb(parts_root / train[0]["filename"]), read_xyz(parts_root / train[0]["xyzname"])
    assert rgb.shape == xyz.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8 and xyz.dtype == np.float32


def test_parts3d_both_single_modality_defects_are_present(parts_root):
    labels = {p.name for p in parts_root.glob("*/test/*")} - {"good"}
    assert {"rgb"} in [DEFECT_MODALITIES[k] for k in labels]
    assert {"xyz"} in [DEFECT_MODALITIES[k] for k in labels]


def test_parts3d_masks_lie_on_the_part_above_the_table(parts_root):
    rig = Rig.for_size(SIZE)
    masks = sorted(parts_root.glob("*/test/*/gt/*.png"))
    assert len(masks) == 2 * 4
    for mask_path in masks:
        mask = read_mask(mask_path)
        xyz = read_xyz(mask_path.parent.parent / "xyz" / (mask_path.stem + ".tiff"))
        height = rig.height_above_table(xyz)
        border = _valid(xyz) & ~np.pad(np.ones((SIZE - 4, SIZE - 4), bool), 2)
        assert np.median(np.abs(height[border])) < 0.3e-3, f"table not at height 0 in {mask_path}"
        if mask_path.parts[-3] == "good":
            assert not mask.any(), mask_path
            continue
        assert mask.sum() >= 3, mask_path
        on_mask = mask & _valid(xyz)
        assert on_mask.any(), mask_path
        assert height[on_mask].min() > MIN_DEFECT_HEIGHT, f"{mask_path}: min height {height[on_mask].min()}"


@pytest.mark.parametrize(
    ("seed", "classes", "compare_prefix", "same"),
    [
        (0, SMALL["classes"], "", True),  # same seed, same bytes
        (0, ["pebble"], "pebble/", True),  # a class does not depend on the others
        (1, SMALL["classes"], "", False),  # another seed, other images
    ],
)
def test_parts3d_bytes_depend_on_seed_and_class_only(tmp_path, parts_root, seed, classes, compare_prefix, same):
    other = make_parts_dataset(tmp_path / "other", seed=seed, **{**SMALL, "classes": classes})
    mine, theirs = _digests(parts_root, compare_prefix), _digests(other, compare_prefix)
    mine.pop(GENERATION_FILE, None), theirs.pop(GENERATION_FILE, None)
    assert set(mine) == set(theirs) and len(mine) > 20
    if same:
        assert mine == theirs
    else:
        images = [name for name in mine if "/rgb/" in name or "/xyz/" in name]
        assert all(mine[name] != theirs[name] for name in images)


@pytest.mark.parametrize(("kind", "clsname"), list(zip(DEFECT_KINDS, CLASS_NAMES)))
def test_parts3d_defect_changes_only_its_modalities(kind, clsname):
    good, bad = render_sample(clsname, SIZE, sample_rng(5, clsname, "test", 1), kind)
    modalities = DEFECT_MODALITIES[kind]
    assert bad.mask.sum() >= 3
    assert np.all(bad.part[bad.mask] > 0), "mask outside the part and its added material"
    outside = ~bad.mask
    assert np.array_equal(bad.rgb[outside], good.rgb[outside]) and np.array_equal(bad.xyz[outside], good.xyz[outside])
    for name, before, after in (("rgb", good.rgb, bad.rgb), ("xyz", good.xyz, bad.xyz)):
        changed = not np.array_equal(before, after)
        assert changed == (name in modalities), f"{kind} {'changed' if changed else 'left'} {name}"


@pytest.mark.parametrize(("label", "untouched"), [("scratch", "xyz"), ("deformation", "rgb")])
def test_parts3d_written_sample_is_its_render(parts_root, label, untouched):
    """The files are the renders of their (seed, class, split, index), and the modality a single-modality defect
    leaves alone is byte for byte that of the same sample without the defect."""
    index = planned_test_labels(4).index(label)
    for clsname in SMALL["classes"]:
        good, bad = render_sample(clsname, SIZE, sample_rng(0, clsname, "test", index), label)
        folder = parts_root / clsname / "test" / label
        written = {"rgb": read_rgb(folder / "rgb/000.png"), "xyz": read_xyz(folder / "xyz/000.tiff")}
        assert np.array_equal(written["rgb"], bad.rgb) and np.array_equal(written["xyz"], bad.xyz)
        assert np.array_equal(read_mask(folder / "gt/000.png"), bad.mask)
        assert np.array_equal(written[untouched], getattr(good, untouched))


@pytest.mark.parametrize("clsname", CLASS_NAMES)
def test_parts3d_every_class_renders_a_scanned_part(clsname):
    good, defective = render_sample(clsname, SIZE, sample_rng(3, clsname, "train", 0))
    assert defective is None and not good.mask.any()
    on_part = good.part > 0
    assert 0.03 < on_part.mean() < 0.6
    valid = _valid(good.xyz)
    assert 0.5 < valid.mean() < 1.0, "the scanner misses some points, not most"
    assert np.all(good.xyz[valid, 2] > 0.3)
    height = Rig.for_size(SIZE).height_above_table(good.xyz)
    assert np.median(height[on_part & valid]) > 2e-3
    assert np.abs(good.rgb[on_part].mean(0) - good.rgb[~on_part].mean(0)).max() > 10, "part and table look alike"


def test_parts3d_photos_are_bundled_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    photo.cache_clear()
    for name in PHOTOS:
        detail = photo(name)
        assert detail.shape == (512, 512) and np.isfinite(detail).all() and abs(detail.std() - 1) < 1e-3
    assert set(CLASS_FINISHES) == set(CLASS_NAMES)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"classes": ["ball"]}, ConfigError),  # a Synthetic3D class
        ({"size": 16}, ConfigError),
        ({"test_per_class": 1}, ConfigError),
        ({"train_per_class": 0}, ConfigError),
    ],
)
def test_parts3d_rejects_bad_arguments(tmp_path, arguments, error):
    with pytest.raises(error):
        make_parts_dataset(tmp_path / "out", **{**SMALL, **arguments})


def test_parts3d_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        make_parts_dataset(tmp_path, **SMALL)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_parts3d_cli_writes_dataset_and_meta(tmp_path):
    script = REPO_ROOT / "A_ori_dataset_split/Parts3D/make_parts_3d.py"
    args = [sys.executable, str(script), "--out", "parts", "--seed", "2", "--size", "32", "--train-per-class", "1",
            "--test-per-class", "2", "--classes", "tube", "--meta"]
    run = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    train = (tmp_path / "parts/train.jsonl").read_text().splitlines()
    test = (tmp_path / "parts/test.jsonl").read_text().splitlines()
    assert len(train) == 1 + 2 and len(test) == 2
    assert {json.loads(line)["clsname"] for line in train + test} == {"tube"}
    assert json.loads((tmp_path / "parts" / GENERATION_FILE).read_text())["seed"] == 2
