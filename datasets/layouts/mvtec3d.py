"""The MVTec 3D-AD layout (``dataset.layout: mvtec3d``): also converted Eyecandies and Synthetic3D.

::

    <root>/<class>/{train,validation}/good/{rgb/NAME.png, xyz/NAME.tiff}
    <root>/<class>/test/<label>/{rgb/NAME.png, xyz/NAME.tiff, gt/NAME.png}   (gt for labels other than good)

The scan refuses, with a :class:`DataError` naming the file or folder: a class folder without
``train``/``test``, a split/label folder without ``rgb``/``xyz``, a non-``good`` folder in a training
split, an rgb image without its xyz (or test mask) partner and vice versa. Files at the root (licence,
readme, meta files), extra folders inside a class folder other than the splits (e.g. ``calibration``)
and hidden entries (starting with ``.``) are ignored.
"""

from __future__ import annotations

from pathlib import Path

from datasets.layouts import register_layout
from datasets.layouts.folders import files_by_stem, visible_children
from datasets.meta import GOOD, TEST_SPLIT, TRAIN_SPLITS
from utils.errors import DataError

RGB_EXT, XYZ_EXT, MASK_EXT = ".png", ".tiff", ".png"


def _check_partners(rgb: dict[str, Path], other: dict[str, Path], other_dir: Path, ext: str) -> None:
    for stem, path in rgb.items():
        if stem not in other:
            raise DataError(f"missing partner of {path}: expected {other_dir / (stem + ext)}")
    for stem, path in other.items():
        if stem not in rgb:
            raise DataError(
                f"missing partner of {path}: expected an rgb image {other_dir.parent / 'rgb' / (stem + RGB_EXT)}"
            )


def _scan_label_dir(root: Path, folder: Path, clsname: str, split: str, label_name: str) -> list[dict]:
    """Records of one ``<class>/<split>/<label>`` folder (holding ``rgb``, ``xyz`` and maybe ``gt``)."""
    rgb_dir, xyz_dir, gt_dir = folder / "rgb", folder / "xyz", folder / "gt"
    for needed in (rgb_dir, xyz_dir):
        if not needed.is_dir():
            raise DataError(f"unknown layout: {folder} has no '{needed.name}' folder (expected rgb/ and xyz/)")
    rgb = files_by_stem(rgb_dir, RGB_EXT)
    if not rgb:
        raise DataError(f"no {RGB_EXT} images in {rgb_dir}")
    xyz = files_by_stem(xyz_dir, XYZ_EXT)
    _check_partners(rgb, xyz, xyz_dir, XYZ_EXT)
    defective = split == TEST_SPLIT and label_name != GOOD
    gt: dict[str, Path] = {}
    if defective:
        if not gt_dir.is_dir():
            raise DataError(f"unknown layout: defective test folder {folder} has no 'gt' folder")
        gt = files_by_stem(gt_dir, MASK_EXT)
        _check_partners(rgb, gt, gt_dir, MASK_EXT)
    records = []
    for stem, path in rgb.items():
        record = {
            "filename": path.relative_to(root).as_posix(),
            "xyzname": xyz[stem].relative_to(root).as_posix(),
            "label": int(label_name != GOOD),
            "label_name": label_name,
            "clsname": clsname,
            "split": split,
        }
        if defective:
            record["maskname"] = gt[stem].relative_to(root).as_posix()
        records.append(record)
    return records


def _scan_class(root: Path, class_dir: Path) -> tuple[list[dict], list[dict]]:
    """Train (train + validation) and test records of one class folder.

    Args:
        root: dataset root (paths in the records are relative to it).
        class_dir: ``<root>/<class>``.

    Returns:
        ``(train_records, test_records)``.

    Raises:
        DataError: unknown layout or missing partner (module docstring).
    """
    clsname = class_dir.name
    for split in ("train", TEST_SPLIT):
        if not (class_dir / split).is_dir():
            raise DataError(f"unknown layout: class folder {class_dir} has no '{split}' folder")
    train: list[dict] = []
    test: list[dict] = []
    for split in (*TRAIN_SPLITS, TEST_SPLIT):
        split_dir = class_dir / split
        if not split_dir.is_dir():
            continue
        label_dirs = [p for p in visible_children(split_dir) if p.is_dir()]
        if not label_dirs:
            raise DataError(f"unknown layout: {split_dir} has no label folder (expected good/ ...)")
        for label_dir in label_dirs:
            if split != TEST_SPLIT and label_dir.name != GOOD:
                raise DataError(f"unknown layout: training split folder {label_dir} is not '{GOOD}'")
            records = _scan_label_dir(root, label_dir, clsname, split, label_dir.name)
            (test if split == TEST_SPLIT else train).extend(records)
    return train, test


@register_layout("mvtec3d")
def scan_mvtec3d(root: Path) -> tuple[list[dict], list[dict]]:
    """Train (train + validation) and test records of every class folder of ``root``, by class then path.

    Raises:
        DataError: unknown layout or missing partner (module docstring).
    """
    class_dirs = [p for p in visible_children(root) if p.is_dir()]
    if not class_dirs:
        raise DataError(f"unknown layout: no class folder in {root}")
    train: list[dict] = []
    test: list[dict] = []
    for class_dir in class_dirs:
        class_train, class_test = _scan_class(root, class_dir)
        train.extend(class_train)
        test.extend(class_test)
    return train, test
