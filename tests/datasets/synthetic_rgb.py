"""Synthetic3D's RGB images and masks, walked for the tests of the RGB-only layouts."""

from __future__ import annotations

from pathlib import Path


def synthetic_rgb_samples(source: Path, clsname: str):
    """``(split, label, name, rgb path, mask path or None)`` of one Synthetic3D class, validation joining train.

    The RGB-only layouts' tests rewrite these into their own folders (no point clouds).
    """
    for image in sorted((source / clsname).glob("*/*/rgb/*.png")):
        split, label = image.parts[-4], image.parts[-3]
        mask = image.parents[1] / "gt" / image.name if label != "good" else None
        yield ("train" if split == "validation" else split), label, f"{split}_{image.stem}", image, mask
