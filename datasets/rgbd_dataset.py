"""RGB + depth samples for the unified incremental model (DESIGN §4; paper: the two input modalities).

A sample's ``inputs`` hold, per modality the model uses, the RGB image (``"rgb"``) and the depth image
built from the organised point cloud (``"depth"``, :func:`datasets.depth.xyz_to_depth`), both
``(3, S, S)`` and normalised with the backbone's preprocessing (``mean``/``std``; ImageNet's by
default); next to them the ground-truth mask. RGB is resized bilinearly; the point cloud and the mask
with nearest neighbour (so no depth value is ever interpolated across an object edge) before the depth
image is built. Where maps are scored on the object (``model.score_region: object``) the scored samples
(test and held-out images, and training images scored for calibration) also carry the cloud's object
footprint (``"foreground"``, :mod:`datasets.footprint`). Without ``"depth"`` among the modalities and
without that footprint the point cloud is never read (RGB-only layouts have none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.depth import xyz_to_depth
from datasets.footprint import object_footprint
from datasets.io import read_mask, read_rgb, read_xyz
from datasets.meta import SAMPLE_KEYS
from utils.errors import DataError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RGBDDataset", "model_inputs", "normalize_image", "read_rgbd_pair"]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalize_image(
    image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Normalise an ``(H, W, 3)`` float image in [0, 1] into a ``(3, H, W)`` float32 tensor ``(x - mean) / std``."""
    mean, std = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    chw = ((image.astype(np.float32) - mean) / std).transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw))


def _resize(array: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    if array.shape[:2] == (size, size):
        return array
    return cv2.resize(array, (size, size), interpolation=interpolation)


def read_rgbd_pair(rgb_path: Path, xyz_path: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one sample's files: ``(H, W, 3)`` uint8 RGB and ``(H, W, 3)`` float32 xyz (``None`` without a path).

    Raises:
        DataError: a file is missing or broken (:mod:`datasets.io`), or the two sizes differ.
    """
    rgb = read_rgb(rgb_path)
    if xyz_path is None:
        return rgb, None
    xyz = read_xyz(xyz_path)
    if xyz.shape[:2] != rgb.shape[:2]:
        raise DataError(f"xyz size {xyz.shape[:2]} of {xyz_path} differs from rgb size {rgb.shape[:2]} of {rgb_path}")
    return rgb, xyz


def model_inputs(
    rgb: np.ndarray,
    xyz: np.ndarray | None,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    xyz_path: Path | None = None,
    foreground: bool = False,
    depth: bool = True,
) -> dict[str, torch.Tensor]:
    """The model's inputs of one sample, as in training: modality → ``(3, S, S)`` normalised image.

    ``"rgb"`` is the image resized bilinearly; ``"depth"`` (with a cloud and ``depth``) the depth image of the
    cloud resized with nearest neighbour; with ``foreground``, ``"foreground"`` the ``(1, S, S)`` float 0/1 object
    footprint of that cloud (:func:`datasets.footprint.object_footprint`, for ``model.score_region: object``).

    Raises:
        DataError: the cloud has no valid point, or is too small for a footprint (named by ``xyz_path``);
            ``foreground`` without a cloud.
    """
    inputs = {"rgb": normalize_image(_resize(rgb, image_size, cv2.INTER_LINEAR).astype(np.float32) / 255.0, mean, std)}
    if foreground and xyz is None:
        raise DataError("the object footprint (model.score_region: object) needs the point cloud; this sample has none")
    if xyz is None:
        return inputs
    cloud = _resize(xyz, image_size, cv2.INTER_NEAREST)
    try:
        if depth:
            inputs["depth"] = normalize_image(np.repeat(xyz_to_depth(cloud)[:, :, None], 3, axis=2), mean, std)
        if foreground:
            inputs["foreground"] = torch.from_numpy(object_footprint(cloud)[None].astype(np.float32))
    except ValueError as exc:
        raise DataError(f"{exc}: {xyz_path}") from exc
    return inputs


class RGBDDataset(Dataset):
    """Samples of the classes in ``class_ids`` from a meta table (see :mod:`datasets.meta`).

    Args:
        root: dataset root the record paths are relative to.
        records: meta records (``filename``, ``label``, ``clsname``, optional ``maskname``; ``xyzname`` when
            ``modalities`` include depth).
        class_ids: class name → classifier index, for the classes of this step (or seen so far);
            records of other classes are dropped.
        image_size: output side ``S``.
        mean: per-channel mean of the input normalisation (the backbone's ``input_mean``), [0, 1] units.
        std: per-channel std of the input normalisation (the backbone's ``input_std``).
        modalities: the model's modalities; the point cloud is read only with ``"depth"`` or ``foreground``.
        foreground: add each cloud's object footprint to ``inputs`` (``model.score_region: object``).

    Raises:
        DataError: a class of ``class_ids`` has no record; a record lacks a key.

    Each item is a dict: ``inputs`` modality → float32 ``(3, S, S)`` (always ``"rgb"``, ``"depth"`` with
    depth; with ``foreground`` also ``"foreground"`` ``(1, S, S)`` in {0, 1}), ``mask`` float32 ``(1, S, S)``
    in {0, 1}, ``label`` int, ``clsname`` str, ``class_id`` int, ``filename`` str (relative rgb path).
    """

    def __init__(
        self,
        root: str | Path,
        records: Sequence[Mapping],
        class_ids: Mapping[str, int],
        image_size: int,
        mean: Sequence[float] = tuple(IMAGENET_MEAN),
        std: Sequence[float] = tuple(IMAGENET_STD),
        modalities: Sequence[str] = ("rgb", "depth"),
        foreground: bool = False,
    ) -> None:
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.root = Path(root)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.image_size = int(image_size)
        self.class_ids = dict(class_ids)
        self.uses_depth = "depth" in modalities
        self.foreground = bool(foreground)
        self.reads_cloud = self.uses_depth or self.foreground
        needed = (*SAMPLE_KEYS, "xyzname") if self.reads_cloud else SAMPLE_KEYS
        for number, record in enumerate(records):
            for key in needed:
                if key not in record:
                    cloud = key == "xyzname"
                    why = " (the depth modality and the object footprint read the point cloud)" if cloud else ""
                    raise DataError(f"meta record {number} lacks key '{key}'{why}: {dict(record)}")
        self.records = [dict(r) for r in records if r["clsname"] in self.class_ids]
        present = {r["clsname"] for r in self.records}
        absent = sorted(set(self.class_ids) - present)
        if absent:
            raise DataError(f"no sample of class(es) {absent} in the meta records (root {self.root})")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        rgb_path = self.root / record["filename"]
        xyz_path = self.root / record["xyzname"] if self.reads_cloud else None
        rgb, xyz = read_rgbd_pair(rgb_path, xyz_path)
        mask_name = record.get("maskname")
        if mask_name:
            mask_path = self.root / mask_name
            mask = read_mask(mask_path)
            if mask.shape != rgb.shape[:2]:
                raise DataError(
                    f"mask size {mask.shape} of {mask_path} differs from rgb size {rgb.shape[:2]} of {rgb_path}"
                )
            mask = _resize(mask.astype(np.uint8), self.image_size, cv2.INTER_NEAREST)
        else:
            mask = np.zeros((self.image_size, self.image_size), dtype=np.uint8)
        return {
            "inputs": model_inputs(rgb, xyz, self.image_size, self.mean, self.std, xyz_path, self.foreground,
                                   self.uses_depth),
            "mask": torch.from_numpy(mask[None].astype(np.float32)),
            "label": int(record["label"]),
            "clsname": record["clsname"],
            "class_id": int(self.class_ids[record["clsname"]]),
            "filename": record["filename"],
        }
