"""Parts3D: a development-only RGB + organised-point-cloud anomaly dataset in the MVTec 3D-AD layout.

A second synthetic family, independent of :mod:`datasets.synthetic` (the default data): it shares no
shapes, textures, defects or code with it, so a method tuned on one can be checked on the other. It is
never used unless a config or command points at it.

Scene (:mod:`~datasets.parts3d.rig`): a fixed inspection cell, a pinhole camera tilted 20° over a table
with a structured-light projector beside it. One machined or natural part (:mod:`~datasets.parts3d.objects`:
``bolt``, ``bracket``, ``gear``, ``pebble``, ``perforated_disc``, ``tube``, solids given by signed distance
functions) lies on the table at a jittered pose (:mod:`~datasets.parts3d.solid`) and is ray-marched
(:mod:`~datasets.parts3d.raymarch`). Surfaces carry real photographs bundled with scikit-image, tinted per
class (:mod:`~datasets.parts3d.textures`), shaded by a light whose direction and strength change per sample,
with cast shadows (:mod:`~datasets.parts3d.lighting`). The point cloud is what the scanner measures
(:mod:`~datasets.parts3d.scanner`): depth noise growing with distance and grazing incidence, missing
points in projector shadows, on steep slopes and on dark surfaces, a few outliers.

Defects (:mod:`~datasets.parts3d.defects`): ``scratch`` and ``discoloration`` change RGB only,
``deformation`` changes depth only, ``hole`` and ``foreign_object`` change both. The mask marks exactly the
pixels of the part (or of added material) that the defect changed (:mod:`~datasets.parts3d.scene`).

Written by :func:`make_parts_dataset` (:mod:`~datasets.parts3d.writer`); command line:
``A_ori_dataset_split/Parts3D/make_parts_3d.py``.
"""

from datasets.parts3d.defects import DEFECT_KINDS, DEFECT_MODALITIES
from datasets.parts3d.objects import CLASS_NAMES
from datasets.parts3d.rig import Rig
from datasets.parts3d.scene import PartsSample, render_sample
from datasets.parts3d.writer import (
    DEFAULT_GENERATION,
    GENERATION_FILE,
    MIN_SIZE,
    make_parts_dataset,
    planned_test_labels,
    sample_rng,
    validation_count,
)

__all__ = [
    "CLASS_NAMES",
    "DEFECT_KINDS",
    "DEFECT_MODALITIES",
    "DEFAULT_GENERATION",
    "GENERATION_FILE",
    "MIN_SIZE",
    "PartsSample",
    "Rig",
    "make_parts_dataset",
    "planned_test_labels",
    "render_sample",
    "sample_rng",
    "validation_count",
]
