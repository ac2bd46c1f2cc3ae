"""New scans to predict: RGB images found under a path, each paired with its point cloud.

Pairing rules (the same for one file and for every image of a folder, searched recursively in
sorted order):

* ``.../rgb/NAME.png`` pairs with ``.../xyz/NAME.tiff`` (the MVTec 3D-AD layout);
* any other ``NAME.png`` pairs with ``NAME.tiff`` beside it.

``.tif`` is accepted for ``.tiff``, and ``.jpg``/``.jpeg``/``.bmp`` for ``.png``. Images inside ``xyz/`` and
ground-truth mask folders (``gt/``, MVTec AD's ``ground_truth/``, VisA's ``Masks/``) are not inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from utils.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "ScanInput", "find_scans"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_CLOUD_SUFFIXES = (".tiff", ".tif")
_NOT_INPUT_FOLDERS = {"gt", "ground_truth", "Masks", "xyz"}


@dataclass(frozen=True)
class ScanInput:
    """One input: the RGB image, its point cloud (``None`` when none was found) and its name.

    Attributes:
        rgb: the RGB image file.
        xyz: the partner point cloud, or ``None``.
        name: the RGB path relative to the searched folder, without suffix (``a/rgb/000``); output files
            keep this structure, so two inputs never share an output name.
    """

    rgb: Path
    xyz: Path | None
    name: str


def _partner(rgb: Path) -> Path | None:
    folder = rgb.parent.parent / "xyz" if rgb.parent.name == "rgb" else rgb.parent
    for suffix in _CLOUD_SUFFIXES:
        candidate = folder / f"{rgb.stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _is_input(path: Path, root: Path) -> bool:
    inside = path.relative_to(root).parts[:-1]
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not _NOT_INPUT_FOLDERS & set(inside)


def find_scans(path: str | Path) -> list[ScanInput]:
    """Every input under ``path`` (one image file, or a folder searched recursively), in sorted order.

    Raises:
        DataError: ``path`` does not exist, is a file that is not an image, or a folder without images.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"input {path} is not an RGB image ({', '.join(IMAGE_SUFFIXES)})")
        return [ScanInput(path, _partner(path), path.stem)]
    if not path.is_dir():
        raise DataError(f"input not found: {path}")
    images = sorted(p for p in path.rglob("*") if _is_input(p, path))
    if not images:
        raise DataError(f"no RGB image ({', '.join(IMAGE_SUFFIXES)}) under {path}")
    return [ScanInput(p, _partner(p), p.relative_to(path).with_suffix("").as_posix()) for p in images]
