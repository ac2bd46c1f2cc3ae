"""Synthetic3D: a small RGB + organised-point-cloud anomaly dataset in the MVTec 3D-AD layout (DESIGN §2, §4).

The embedded default dataset: it lets the whole pipeline (meta, loaders, incremental steps,
metrics) run anywhere in seconds, and its defects are built so that each modality matters:

* ``color_stain`` changes RGB only (geometry untouched);
* ``dent`` and ``bump`` change the geometry only; RGB is shaded from the undeformed surface, so
  they are invisible in RGB;
* ``crack`` and ``contamination`` (a small foreign blob of another colour) change both.

Scene: a pinhole camera (focal ``4·S`` px for an ``S×S`` image, principal point at the image centre)
looks down on a slightly tilted table 0.62–0.68 m away; one object stands on it. Objects are height
fields over the table in object coordinates, so pose (shift, rotation, scale), colours and
lighting vary per sample while the shape and texture stay those of the class. Each pixel's point
lies on its camera ray: ``z = z_table − height``, ``x = (u − c)·z / f``, ``y = (v − c)·z / f``.
Scanner-like missing points ``(0, 0, 0)`` are sprinkled, denser on steep slopes.

Masks mark exactly the pixels where the defective sample's RGB bytes or xyz values differ from
the defect-free render of the same sample (same pose, light, noise and holes), restricted to the
object; defects are confined to the object eroded by 1 px, so their shading changes stay on it too.

Everything derives from ``numpy.random.default_rng([seed, class index, split, sample index])``:
the same arguments give the same bytes, and one class's samples do not depend on which other
classes are generated. Class names sort into the incremental order (see :data:`CLASS_NAMES`).

Modules: :mod:`~datasets.synthetic.shapes` (the class shapes), :mod:`~datasets.synthetic.render`
(scene and rendering), :mod:`~datasets.synthetic.defects` (the defect types),
:mod:`~datasets.synthetic.writer` (the dataset on disk).
"""

from datasets.synthetic.defects import DEFAULT_DEFECT_SCALE, DEFECT_TYPES
from datasets.synthetic.render import DEFAULT_POSE_JITTER, SyntheticSample, render_sample
from datasets.synthetic.shapes import CLASS_NAMES
from datasets.synthetic.writer import DEFAULT_GENERATION, MIN_SIZE, ensure_dataset, make_dataset

__all__ = [
    "CLASS_NAMES",
    "DEFECT_TYPES",
    "DEFAULT_DEFECT_SCALE",
    "DEFAULT_GENERATION",
    "DEFAULT_POSE_JITTER",
    "MIN_SIZE",
    "SyntheticSample",
    "render_sample",
    "make_dataset",
    "ensure_dataset",
]
