"""The Synthetic3D writer: a whole dataset in the MVTec 3D-AD layout, with its generation arguments.

Everything derives from ``numpy.random.default_rng([seed, class index, split, sample index])``: the
same arguments give the same bytes, and one class's samples do not depend on which other classes are
generated. ``<out>/synthetic3d.json`` records the arguments; :func:`ensure_dataset` compares them.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datasets.io import write_mask, write_rgb, write_xyz
from datasets.synthetic.defects import DEFAULT_DEFECT_SCALE, DEFECT_TYPES
from datasets.synthetic.render import DEFAULT_POSE_JITTER, SyntheticSample, render_sample
from datasets.synthetic.shapes import CLASS_NAMES
from utils.errors import ConfigError, DataError

__all__ = ["DEFAULT_GENERATION", "MIN_SIZE", "make_dataset", "ensure_dataset"]

LOGGER = logging.getLogger(__name__)

MIN_SIZE = 32
#: Defaults of :func:`make_dataset` (its CLI shows these).
DEFAULT_GENERATION = {"size": 128, "train_per_class": 30, "test_per_class": 30, "seed": 0}
#: Arguments of datasets whose ``synthetic3d.json`` lacks a key (written before the option existed).
_UNRECORDED = {"pose_jitter": 1.0, "defect_scale": 1.0}
_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


def _test_plan(class_index: int, count: int) -> list[str]:
    """Label of each test sample: about a third good, the rest spread over the defect types (rotated per class)."""
    good = max(1, round(count / 3))
    order = DEFECT_TYPES[class_index % len(DEFECT_TYPES) :] + DEFECT_TYPES[: class_index % len(DEFECT_TYPES)]
    return ["good"] * good + [order[i % len(order)] for i in range(count - good)]


def _write_sample(folder: Path, stem: str, sample: SyntheticSample, with_gt: bool, compress: bool) -> None:
    write_rgb(folder / "rgb" / f"{stem}.png", sample.rgb)
    write_xyz(folder / "xyz" / f"{stem}.tiff", sample.xyz, compress=compress)
    if with_gt:
        write_mask(folder / "gt" / f"{stem}.png", sample.mask)


def _validate(size: int, train_per_class: int, test_per_class: int, classes: Sequence[str]) -> None:
    if size < MIN_SIZE:
        raise ConfigError(f"size must be >= {MIN_SIZE}, got {size}")
    if train_per_class < 1:
        raise ConfigError(f"train_per_class must be >= 1, got {train_per_class}")
    if test_per_class < 2:
        raise ConfigError(f"test_per_class must be >= 2 (one good and one defective), got {test_per_class}")
    unknown = sorted(set(classes) - set(CLASS_NAMES))
    if unknown:
        raise ConfigError(f"unknown synthetic class(es) {unknown}; valid: {list(CLASS_NAMES)}")


def make_dataset(
    out: str | Path,
    size: int = DEFAULT_GENERATION["size"],
    train_per_class: int = DEFAULT_GENERATION["train_per_class"],
    test_per_class: int = DEFAULT_GENERATION["test_per_class"],
    seed: int = DEFAULT_GENERATION["seed"],
    classes: Sequence[str] | None = None,
    compress: bool = False,
    pose_jitter: float = DEFAULT_POSE_JITTER,
    defect_scale: float = DEFAULT_DEFECT_SCALE,
) -> Path:
    """Write a Synthetic3D dataset in the MVTec 3D-AD layout.

    ``<out>/<class>/{train,validation}/good/{rgb,xyz}``, ``<out>/<class>/test/<good|defect>/{rgb,xyz,gt}``
    and ``<out>/synthetic3d.json`` (the generation arguments). Validation holds ``max(2, round(0.1 · train))``
    samples per class.

    Args:
        out: new or empty folder.
        size: image side in pixels (≥ 32).
        train_per_class: training images per class.
        test_per_class: test images per class (about a third good).
        seed: generation seed.
        classes: subset of :data:`CLASS_NAMES` (default all); a class's samples do not depend on the others.
        compress: deflate-compress the xyz TIFFs.
        pose_jitter: scale of the per-sample pose variation (see :func:`render_sample`).
        defect_scale: size factor of the defects (see :func:`render_sample`).

    Returns:
        The dataset root.

    Raises:
        ConfigError: invalid arguments. DataError: ``out`` exists and is not empty.
    """
    classes = list(CLASS_NAMES if classes is None else classes)
    _validate(size, train_per_class, test_per_class, classes)
    if not 0.0 <= pose_jitter <= 1.0:
        raise ConfigError(f"pose_jitter must be in 0..1, got {pose_jitter}")
    if not 0.0 < defect_scale <= 3.0:
        raise ConfigError(f"defect_scale must be in (0, 3], got {defect_scale}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder exists and is not empty: {out} (choose a new folder)")
    out.mkdir(parents=True, exist_ok=True)
    info = _generation_info(size, train_per_class, test_per_class, seed, classes, compress, pose_jitter, defect_scale)
    val_count = info["validation_per_class"]
    for clsname in classes:
        class_index = CLASS_NAMES.index(clsname)
        for split, count in (("train", train_per_class), ("validation", val_count)):
            for index in range(count):
                rng = np.random.default_rng([seed, class_index, _SPLIT_CODES[split], index])
                good = render_sample(clsname, size, rng, pose_jitter=pose_jitter)["good"]
                _write_sample(out / clsname / split / "good", f"{index:03d}", good, False, compress)
        counters: dict[str, int] = {}
        for index, label in enumerate(_test_plan(class_index, test_per_class)):
            rng = np.random.default_rng([seed, class_index, _SPLIT_CODES["test"], index])
            defect = None if label == "good" else label
            rendered = render_sample(clsname, size, rng, defect, pose_jitter, defect_scale)
            stem = f"{counters.setdefault(label, 0):03d}"
            counters[label] += 1
            sample = rendered["good"] if label == "good" else rendered["defect"]
            _write_sample(out / clsname / "test" / label, stem, sample, True, compress)
        LOGGER.info("synthetic class %s written", clsname)
    (out / "synthetic3d.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def _generation_info(
    size: int,
    train_per_class: int,
    test_per_class: int,
    seed: int,
    classes: Sequence[str],
    compress: bool,
    pose_jitter: float,
    defect_scale: float,
) -> dict:
    """The generation arguments as recorded in ``<out>/synthetic3d.json``."""
    return {
        "generator": "datasets.synthetic",
        "size": size,
        "train_per_class": train_per_class,
        "validation_per_class": max(2, round(0.1 * train_per_class)),
        "test_per_class": test_per_class,
        "seed": seed,
        "classes": list(classes),
        "compress": compress,
        "pose_jitter": pose_jitter,
        "defect_scale": defect_scale,
    }


def _recorded_info(out: Path) -> dict:
    """``<out>/synthetic3d.json`` of an existing dataset; DataError when it is missing or unreadable."""
    path = out / "synthetic3d.json"
    try:
        return {**_UNRECORDED, **json.loads(path.read_text(encoding="utf-8"))}
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{out} exists but {path} is missing or unreadable ({exc}); it is not a Synthetic3D dataset "
            f"made by this generator: remove it (rm -rf {out}) or choose another folder"
        ) from exc


def ensure_dataset(out: str | Path, **generation: Any) -> Path:
    """Make the dataset at ``out`` unless one made with the same arguments is already there.

    A new dataset is written to ``<out>.partial`` and renamed, so an interrupted generation is never taken
    for a dataset.

    Args:
        out: the dataset root.
        generation: keyword arguments of :func:`make_dataset` (its defaults apply to the others).

    Returns:
        The dataset root.

    Raises:
        DataError: ``out`` exists but was made with other arguments, naming the differing keys.
    """
    out = Path(out)
    bound = inspect.signature(make_dataset).bind(out, **generation)
    bound.apply_defaults()
    arguments = {k: v for k, v in bound.arguments.items() if k != "out"}
    arguments["classes"] = list(CLASS_NAMES if arguments["classes"] is None else arguments["classes"])
    wanted = _generation_info(**arguments)
    if out.exists():
        recorded = _recorded_info(out)
        differing = [
            f"{key} {recorded.get(key)!r} (wanted {value!r})"
            for key, value in wanted.items()
            if recorded.get(key) != value
        ]
        if differing:
            raise DataError(
                f"{out} was made with other generation arguments: {', '.join(differing)} "
                f"(see {out / 'synthetic3d.json'}); remove it to make the current one (rm -rf {out})"
            )
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    make_dataset(partial, **arguments)
    partial.rename(out)
    return out
