"""datasets/footprint.py: the object footprint of hand-made clouds of a box on a tilted table."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.footprint import object_footprint

SIZE = 48
BOX = (slice(16, 32), slice(14, 30))  # rows, columns of the object


def _scene(changes=()) -> np.ndarray:
    """``(48, 48, 3)`` cloud: a table 0.5 m away tilted 1 mm per 10 px, a 20 mm box on it, then ``changes``."""
    v, u = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    z = 0.5 + 0.0001 * u
    z[BOX] -= 0.02
    for where, value in changes:
        z[where] = value(z[where]) if callable(value) else value
    xyz = np.stack([(u - SIZE / 2) * z / 100.0, (v - SIZE / 2) * z / 100.0, z], axis=-1)
    xyz[z <= 0] = 0.0
    return xyz.astype(np.float32)


def _box(margin: int = 0, also=None) -> np.ndarray:
    """The box's pixels grown by ``margin``, and the pixels at ``also``."""
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[BOX[0].start - margin : BOX[0].stop + margin, BOX[1].start - margin : BOX[1].stop + margin] = True
    if also is not None:
        expected[also] = True
    return expected


SPOT = (slice(13, 20), slice(20, 24))  # over the box's top edge


@pytest.mark.parametrize(
    ("name", "changes", "expected"),
    [
        ("box on the table", [], _box()),
        ("unmeasured spot on the box, open to the table", [(SPOT, 0.0)], _box(also=SPOT)),
        ("enclosed hole through the box shows the table", [((slice(22, 26), slice(20, 24)), lambda z: z + 0.02)],
         _box()),
        ("a single noisy point above the table", [((40, 5), lambda z: z - 0.003)], _box()),
        ("background removed offline", [((slice(None), slice(None)), lambda z: np.where(_box(), z, 0.0))], _box()),
        ("nothing stands out", [(BOX, lambda z: z + 0.02)], np.ones((SIZE, SIZE), dtype=bool)),
    ],
)
def test_object_footprint(name, changes, expected):
    np.testing.assert_array_equal(object_footprint(_scene(changes), margin=0), expected, err_msg=name)


def test_object_footprint_margin_grows_it_by_pixels():
    np.testing.assert_array_equal(object_footprint(_scene(), margin=2), _box(margin=2))


@pytest.mark.parametrize(("shape", "message"), [((16, 16, 3), r"H, W > 20"), ((48, 48, 3), "no valid point")])
def test_object_footprint_rejects_what_it_cannot_use(shape, message):
    with pytest.raises(ValueError, match=message):
        object_footprint(np.zeros(shape, dtype=np.float32))
