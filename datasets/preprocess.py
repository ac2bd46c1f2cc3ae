"""Background-plane removal over a whole MVTec 3D-AD-layout dataset (DESIGN §4, the field's cleaning step).

Writes a complete new root: every xyz TIFF is cleaned with
:func:`datasets.depth.remove_background_plane`, every other file (rgb, gt, calibration, licence…)
is copied unchanged. Never works in place. Each file's RANSAC generator is seeded from the run seed
and the file's relative path, so the result does not depend on the file order or the worker count.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.depth import remove_background_plane
from datasets.io import read_xyz, write_xyz
from datasets.meta import build_meta
from utils.errors import DataError

__all__ = ["PlaneRemoval", "clean_xyz_file", "remove_background_tree"]

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlaneRemoval:
    """Parameters of :func:`datasets.depth.remove_background_plane` (metres, pixels)."""

    border: int = 10
    fit_threshold: float = 0.004
    remove_threshold: float = 0.005
    iterations: int = 1000


def _file_rng(seed: int, relative: str) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha1(relative.encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng([seed, key])


def clean_xyz_file(src: Path, dst: Path, relative: str, seed: int, params: PlaneRemoval) -> int:
    """Remove the background plane of one xyz TIFF; returns the number of zeroed points.

    Raises:
        DataError: unreadable file, or too few border points to fit a plane (names the file).
    """
    xyz = read_xyz(src)
    try:
        cleaned = remove_background_plane(
            xyz,
            _file_rng(seed, relative),
            border=params.border,
            fit_threshold=params.fit_threshold,
            remove_threshold=params.remove_threshold,
            iterations=params.iterations,
        )
    except ValueError as exc:
        raise DataError(f"background plane removal failed ({exc}): {src}") from exc
    write_xyz(dst, cleaned)
    return int((xyz[..., 2] > 0).sum() - (cleaned[..., 2] > 0).sum())


def _check_paths(root: Path, out: Path) -> None:
    root_r, out_r = root.resolve(), out.resolve()
    if out_r == root_r:
        raise DataError(f"output folder must differ from the dataset root (never in place): {out}")
    if root_r in out_r.parents or out_r in root_r.parents:
        raise DataError(f"output folder {out} and dataset root {root} must not contain each other")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output folder exists and is not empty: {out} (choose a new folder)")


def remove_background_tree(
    root: str | Path, out: str | Path, seed: int = 0, params: PlaneRemoval | None = None, workers: int = 1
) -> Path:
    """Write a copy of the dataset at ``root`` into ``out`` with the background plane removed from every cloud.

    Args:
        root: dataset in the MVTec 3D-AD layout (checked with :func:`datasets.meta.build_meta` first).
        out: new or empty folder, neither ``root`` nor inside it.
        seed: RANSAC seed.
        params: plane-removal parameters (defaults: 10 px border, 4 mm fit, 5 mm removal, 1000 iterations).
        workers: processes cleaning clouds in parallel.

    Returns:
        The output root.

    Raises:
        DataError: ``out`` is ``root`` (or nested with it) or not empty; bad layout; a file fails.
    """
    root, out = Path(root), Path(out)
    _check_paths(root, out)
    build_meta(root)
    params = params or PlaneRemoval()
    jobs = []
    for src in sorted(root.rglob("*")):
        relative = src.relative_to(root)
        if not src.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        dst = out / relative
        if src.suffix.lower() == ".tiff" and src.parent.name == "xyz":
            jobs.append((src, dst, relative.as_posix(), seed, params))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            removed = list(pool.map(clean_xyz_file, *zip(*jobs)))
    else:
        removed = [clean_xyz_file(*job) for job in jobs]
    LOGGER.info("cleaned %d clouds into %s (%d background points removed)", len(jobs), out, sum(removed))
    return out
