"""The object footprint of an organised cloud: the pixels a defect can be on (``model.score_region: object``).

A reconstruction model's normal maps can peak on a background it cannot predict (a table with a photo
texture, docs/parts3d.md); restricted to the footprint, its image score reads the object only. The
footprint depends on the input cloud alone (no label, no mask), so scoring with it is as honest as the
background-plane cleaning the MVTec 3D-AD literature applies to the cloud itself.

Recipe, on the cloud as the model sees it (``S × S``, nearest neighbour):

* every pixel but the valid points within :data:`PLANE_DISTANCE` of the dominant plane of the border frame
  (:func:`datasets.depth.remove_background_plane`, seeded RANSAC): missing points count as object, since a
  scanner loses dark and steep surfaces (a dark foreign object) as well as shadows beside the object; where
  most of the border frame is already missing (a cloud cleaned offline, e.g. MVTec 3D-AD after
  ``preprocess.py``) the valid points alone;
* a 3 × 3 opening drops specks; enclosed holes are filled (unmeasured spots, and the table seen through a
  hole of the part or the middle of a ring);
* dilated by ``margin`` pixels (:data:`MARGIN`, 0: on the development copies every pixel of grown footprints
  only lowered I-AUROC, docs/parts3d.md; the defects' masks lie 99 % inside the footprint as it is);
* an empty footprint (an object too flat to stand out) is the whole image: the map is then scored whole.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from datasets.depth import remove_background_plane

__all__ = ["MARGIN", "PLANE_DISTANCE", "object_footprint"]

#: Metres from the background plane below which a point is background (5 × the scanner noise of Parts3D).
PLANE_DISTANCE = 0.0015
#: Pixels (of the ``S × S`` input) the footprint is grown by.
MARGIN = 0
_BORDER = 10
_CLEANED_BORDER_FRACTION = 0.5


def _off_plane(xyz: np.ndarray, valid: np.ndarray, plane_distance: float) -> np.ndarray:
    """``(H, W)`` bool: all but the valid points on the border frame's plane (a cleaned frame: the valid points)."""
    frame = np.ones(valid.shape, dtype=bool)
    frame[_BORDER:-_BORDER, _BORDER:-_BORDER] = False
    if valid[frame].mean() < _CLEANED_BORDER_FRACTION:
        return valid
    cleaned = remove_background_plane(xyz, np.random.default_rng(0), border=_BORDER, remove_threshold=plane_distance)
    return ~valid | (cleaned[..., 2] > 0)


def object_footprint(xyz: np.ndarray, plane_distance: float = PLANE_DISTANCE, margin: int = MARGIN) -> np.ndarray:
    """The pixels of the object (module docstring).

    Args:
        xyz: ``(H, W, 3)`` organised cloud in metres, ``(0, 0, 0)`` = missing; ``H, W > 2 * 10``.
        plane_distance: metres from the background plane below which a point is background.
        margin: pixels the footprint is dilated by.

    Returns:
        ``(H, W)`` bool, True on the object.

    Raises:
        ValueError: wrong shape, a border frame too small for a plane, or no valid point.
    """
    if xyz.ndim != 3 or xyz.shape[2] != 3 or min(xyz.shape[:2]) <= 2 * _BORDER:
        raise ValueError(f"xyz must be (H, W, 3) with H, W > {2 * _BORDER}, got {xyz.shape}")
    valid = xyz[..., 2] > 0
    if not valid.any():
        raise ValueError("point cloud has no valid point (every z <= 0; (0, 0, 0) means missing)")
    footprint = _off_plane(xyz, valid, plane_distance)
    footprint = ndimage.binary_fill_holes(ndimage.binary_opening(footprint, np.ones((3, 3), dtype=bool)))
    if margin > 0:
        footprint = ndimage.binary_dilation(footprint, np.ones((3, 3), dtype=bool), iterations=margin)
    return footprint if footprint.any() else np.ones_like(footprint)
