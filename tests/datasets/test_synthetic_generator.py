from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from datasets.io import read_mask, read_rgb, read_xyz
from datasets.synthetic import (
    CLASS_NAMES,
    DEFAULT_DEFECT_SCALE,
    DEFAULT_POSE_JITTER,
    DEFECT_TYPES,
    ensure_dataset,
    make_dataset,
    render_sample,
)
from utils.errors import ConfigError, DataError


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


SMALL = {"size": 32, "train_per_class": 2, "test_per_class": 3, "classes": ["ball", "wave"]}


def test_make_dataset_same_seed_same_bytes(tmp_path):
    first = _digests(make_dataset(tmp_path / "a", seed=3, **SMALL))
    second = _digests(make_dataset(tmp_path / "b", seed=3, **SMALL))
    assert len(first) > 20
    assert first == second


def test_make_dataset_other_seed_differs(tmp_path):
    first = _digests(make_dataset(tmp_path / "a", seed=3, **SMALL))
    other = _digests(make_dataset(tmp_path / "b", seed=4, **SMALL))
    images = [name for name in first if name.endswith(".png") and "/rgb/" in name]
    assert set(first) - {"synthetic3d.json"} == set(other) - {"synthetic3d.json"}
    assert all(first[name] != other[name] for name in images)


def test_make_dataset_class_does_not_depend_on_other_classes(tmp_path, synthetic_root):
    alone = make_dataset(tmp_path / "ball_only", size=64, train_per_class=4, test_per_class=3, seed=0, classes=["ball"])
    alone_files = {k: v for k, v in _digests(alone).items() if k.startswith("ball/")}
    full_files = {k: v for k, v in _digests(synthetic_root).items() if k.startswith("ball/")}
    assert alone_files == full_files


def test_make_dataset_layout_matches_mvtec3d(synthetic_root):
    assert sorted(p.name for p in synthetic_root.iterdir() if p.is_dir()) == list(CLASS_NAMES)
    info = json.loads((synthetic_root / "synthetic3d.json").read_text())
    assert info["size"] == 64 and info["seed"] == 0
    for clsname in CLASS_NAMES:
        base = synthetic_root / clsname
        assert sorted(p.name for p in base.iterdir()) == ["test", "train", "validation"]
        for split, count in (("train", 4), ("validation", 2)):
            folder = base / split / "good"
            assert sorted(p.name for p in folder.iterdir()) == ["rgb", "xyz"]
            assert [p.stem for p in sorted((folder / "rgb").iterdir())] == [f"{i:03d}" for i in range(count)]
            assert [p.name for p in sorted((folder / "xyz").iterdir())] == [f"{i:03d}.tiff" for i in range(count)]
        labels = sorted(p.name for p in (base / "test").iterdir())
        assert "good" in labels and set(labels) - {"good"} <= set(DEFECT_TYPES) and len(labels) == 3
        for label in labels:
            folder = base / "test" / label
            assert sorted(p.name for p in folder.iterdir()) == ["gt", "rgb", "xyz"]
            stems = {p.stem for p in (folder / "rgb").iterdir()}
            assert stems == {p.stem for p in (folder / "xyz").iterdir()} == {p.stem for p in (folder / "gt").iterdir()}


def test_make_dataset_file_formats(synthetic_root):
    rgb = read_rgb(synthetic_root / "cone/train/good/rgb/000.png")
    xyz = read_xyz(synthetic_root / "cone/train/good/xyz/000.tiff")
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert xyz.shape == (64, 64, 3) and xyz.dtype == np.float32
    valid = xyz[..., 2] > 0
    assert 0 < (~valid).sum() < 0.1 * valid.size, "a few missing points are sprinkled"
    assert np.all(xyz[~valid] == 0)
    assert 0.5 <= xyz[valid, 2].min() and xyz[valid, 2].max() <= 0.75
    raw_gt = (synthetic_root / "cone/test/good/gt/000.png").read_bytes()
    assert raw_gt[:4] == b"\x89PNG"
    assert not read_mask(synthetic_root / "cone/test/good/gt/000.png").any()
    defect_dirs = [p for p in (synthetic_root / "cone/test").iterdir() if p.name != "good"]
    for folder in defect_dirs:
        for gt in (folder / "gt").iterdir():
            assert read_mask(gt).any(), gt


@pytest.mark.parametrize("clsname", CLASS_NAMES)
@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_render_sample_mask_marks_exactly_changed_pixels(clsname, defect):
    rendered = render_sample(clsname, 48, np.random.default_rng([7, len(clsname)]), defect)
    good, bad = rendered["good"], rendered["defect"]
    rgb_changed = (good.rgb != bad.rgb).any(axis=-1)
    xyz_changed = (good.xyz != bad.xyz).any(axis=-1)
    assert bad.mask.any()
    np.testing.assert_array_equal(bad.mask, rgb_changed | xyz_changed)
    if defect == "color_stain":
        assert rgb_changed.any() and not xyz_changed.any()
    elif defect in ("dent", "bump"):
        assert xyz_changed.any() and not rgb_changed.any()
    else:
        assert rgb_changed.any() and xyz_changed.any()


@pytest.mark.parametrize(
    ("defect", "farther"), [("dent", True), ("crack", True), ("bump", False), ("contamination", False)]
)
def test_render_sample_geometry_defect_direction(defect, farther):
    bad = render_sample("box", 64, np.random.default_rng(1), defect)
    good_z, bad_z = bad["good"].xyz[..., 2], bad["defect"].xyz[..., 2]
    delta = (bad_z - good_z)[bad["defect"].mask & (good_z > 0)]
    moved = delta[delta != 0]
    assert moved.size > 0
    assert np.all(moved > 0) if farther else np.all(moved < 0)


def test_render_sample_same_rng_state_same_good_render():
    first = render_sample("ring", 40, np.random.default_rng(5))["good"]
    second = render_sample("ring", 40, np.random.default_rng(5), "dent")["good"]
    np.testing.assert_array_equal(first.rgb, second.rgb)
    np.testing.assert_array_equal(first.xyz, second.xyz)


def test_render_sample_classes_differ_in_shape():
    profiles = []
    for clsname in CLASS_NAMES:
        xyz = render_sample(clsname, 48, np.random.default_rng(0))["good"].xyz
        profiles.append(np.sort(xyz[..., 2][xyz[..., 2] > 0])[:200])
    gaps = [np.abs(a - b).mean() for i, a in enumerate(profiles) for b in profiles[i + 1 :]]
    assert min(gaps) > 1e-4


def test_render_sample_large_size():
    sample = render_sample("star", 224, np.random.default_rng(0), "crack")["defect"]
    assert sample.rgb.shape == (224, 224, 3) and sample.xyz.shape == (224, 224, 3) and sample.mask.shape == (224, 224)


def test_make_dataset_test_split_is_balanced(tmp_path):
    root = make_dataset(tmp_path / "d", size=32, train_per_class=1, test_per_class=12, classes=["box"])
    counts = {p.name: len(list((p / "rgb").iterdir())) for p in (root / "box/test").iterdir()}
    assert counts["good"] == 4
    assert set(counts) == {"good", *DEFECT_TYPES}
    assert sorted(v for k, v in counts.items() if k != "good") == [1, 1, 2, 2, 2]
    assert len(list((root / "box/validation/good/rgb").iterdir())) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ["ball", "teapot"]}, "teapot"),
        ({"size": 16}, "size"),
        ({"test_per_class": 1}, "test_per_class"),
        ({"train_per_class": 0}, "train_per_class"),
        ({"pose_jitter": 1.5}, "pose_jitter"),
        ({"defect_scale": 0.0}, "defect_scale"),
        ({"defect_scale": 4.0}, "defect_scale"),
    ],
)
def test_make_dataset_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_dataset(tmp_path / "out", **{"size": 32, "train_per_class": 1, "test_per_class": 2, **kwargs})


def _footprint_centroids(pose_jitter: float, count: int = 8) -> np.ndarray:
    """Pixel centroids ``(count, 2)`` of the defect-free box footprint (points nearer than the table)."""
    centroids = []
    for index in range(count):
        xyz = render_sample("box", 64, np.random.default_rng([0, index]), pose_jitter=pose_jitter)["good"].xyz
        z = xyz[..., 2]
        near = z < np.median(z[z > 0]) - 0.005
        centroids.append(np.argwhere(near).mean(axis=0))
    return np.array(centroids)


def test_pose_jitter_zero_aligns_the_objects():
    aligned, varied = _footprint_centroids(0.0), _footprint_centroids(1.0)
    assert aligned.std(axis=0).max() < 0.5 < varied.std(axis=0).max()


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_defect_scale_grows_the_defect(kind):
    areas = [
        render_sample("box", 128, np.random.default_rng([5, 1]), kind, defect_scale=scale)["defect"].mask.sum()
        for scale in (1.0, 2.0)
    ]
    assert areas[1] > 1.5 * areas[0]


def test_make_dataset_refuses_non_empty_output(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        make_dataset(tmp_path / "out", size=32, train_per_class=1, test_per_class=2, classes=["box"])


def test_ensure_dataset_makes_once_then_keeps(tmp_path):
    out = ensure_dataset(tmp_path / "syn", seed=3, **SMALL)
    first = _digests(out)
    assert not (tmp_path / "syn.partial").exists()
    assert ensure_dataset(tmp_path / "syn", seed=3, **SMALL) == out
    assert _digests(out) == first
    info = json.loads((out / "synthetic3d.json").read_text())
    assert (info["pose_jitter"], info["defect_scale"]) == (DEFAULT_POSE_JITTER, DEFAULT_DEFECT_SCALE)


def _drop_later_options(out: Path) -> None:
    """Make ``out`` look like a dataset of a version before ``pose_jitter`` and ``defect_scale`` existed."""
    info = json.loads((out / "synthetic3d.json").read_text())
    del info["pose_jitter"], info["defect_scale"]
    (out / "synthetic3d.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    ("change", "seed", "message"),
    [
        (lambda out: None, 4, "seed 3 \\(wanted 4\\)"),
        (_drop_later_options, 3, "pose_jitter 1.0 \\(wanted 0.15\\), defect_scale 1.0 \\(wanted 2.0\\)"),
        (lambda out: (out / "synthetic3d.json").unlink(), 3, "synthetic3d.json is missing"),
    ],
)
def test_ensure_dataset_refuses_a_different_dataset(tmp_path, change, seed, message):
    out = make_dataset(tmp_path / "syn", seed=3, **SMALL)
    change(out)
    with pytest.raises(DataError, match=message):
        ensure_dataset(out, seed=seed, **SMALL)
