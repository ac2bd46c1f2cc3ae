"""The MVTec AD layout (``dataset.layout: mvtec_ad``), RGB only: IUF's 2D benchmark.

::

    <root>/<class>/train/good/NAME.png
    <root>/<class>/test/<label>/NAME.png
    <root>/<class>/ground_truth/<label>/NAME_mask.png      (labels other than good)

Grey-scale images (grid, screw, zipper) are read as three equal channels. The scan refuses, with a
:class:`DataError` naming the file or folder: a class folder without ``train``/``test``, a training
folder other than ``good``, a label folder without images, a defective test image without its mask and
a mask without its image. Files at the root (licence, readme, meta files) and hidden entries are ignored.
"""

from __future__ import annotations

from pathlib import Path

from datasets.layouts import register_layout
from datasets.layouts.folders import files_by_stem, visible_children
from datasets.meta import GOOD, TEST_SPLIT
from utils.errors import DataError

IMAGE_EXT, MASK_EXT, MASK_SUFFIX = ".png", ".png", "_mask"


def _images(folder: Path) -> dict[str, Path]:
    images = files_by_stem(folder, IMAGE_EXT)
    if not images:
        raise DataError(f"no {IMAGE_EXT} images in {folder}")
    return images


def _masks(class_dir: Path, label: str, images: dict[str, Path]) -> dict[str, Path]:
    """The mask of every defective test image of ``label``, checked both ways."""
    mask_dir = class_dir / "ground_truth" / label
    masks = files_by_stem(mask_dir, MASK_EXT, MASK_SUFFIX) if mask_dir.is_dir() else {}
    for stem, image in images.items():
        if stem not in masks:
            raise DataError(f"missing partner of {image}: expected {mask_dir / (stem + MASK_SUFFIX + MASK_EXT)}")
    for stem, mask in masks.items():
        if stem not in images:
            raise DataError(f"missing partner of {mask}: expected an image {class_dir / TEST_SPLIT / label / stem}.png")
    return masks


def _records(root: Path, class_dir: Path, split: str) -> list[dict]:
    split_dir = class_dir / split
    records = []
    for label_dir in (p for p in visible_children(split_dir) if p.is_dir()):
        label = label_dir.name
        if split != TEST_SPLIT and label != GOOD:
            raise DataError(f"unknown layout: training split folder {label_dir} is not '{GOOD}'")
        images = _images(label_dir)
        masks = _masks(class_dir, label, images) if label != GOOD else {}
        for stem, image in images.items():
            record = {"filename": image.relative_to(root).as_posix(), "label": int(label != GOOD),
                      "label_name": label, "clsname": class_dir.name, "split": split}
            if stem in masks:
                record["maskname"] = masks[stem].relative_to(root).as_posix()
            records.append(record)
    return records


@register_layout("mvtec_ad")
def scan_mvtec_ad(root: Path) -> tuple[list[dict], list[dict]]:
    """Train and test records of every class folder of ``root``, by class then path.

    Raises:
        DataError: unknown layout or missing partner (module docstring).
    """
    class_dirs = [p for p in visible_children(root) if p.is_dir()]
    if not class_dirs:
        raise DataError(f"unknown layout: no class folder in {root}")
    train: list[dict] = []
    test: list[dict] = []
    for class_dir in class_dirs:
        for split in ("train", TEST_SPLIT):
            if not (class_dir / split).is_dir():
                raise DataError(f"unknown layout: class folder {class_dir} has no '{split}' folder")
        train.extend(_records(root, class_dir, "train"))
        test.extend(_records(root, class_dir, TEST_SPLIT))
    return train, test
