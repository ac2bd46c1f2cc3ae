"""benchmarks/foreground_baseline.py: the footprint map on a hand-made cloud, and the script on the tiny set."""

import numpy as np

from benchmarks import foreground_baseline


def _table_with_box(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A flat table 0.6 m away with a 2 cm high box in the middle: (xyz (S, S, 3), box footprint (S, S))."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float64) - (size - 1) / 2
    box = np.zeros((size, size), bool)
    box[16:32, 12:36] = True
    z = np.where(box, 0.58, 0.60)
    focal = 4.0 * size
    return np.stack([u * z / focal, v * z / focal, z], axis=-1).astype(np.float32), box


def test_foreground_map_is_the_object_footprint():
    xyz, box = _table_with_box()
    assert np.array_equal(foreground_baseline.foreground_map(xyz, sigma=0) > 0.5, box)
    smoothed = foreground_baseline.foreground_map(xyz, sigma=2)
    assert smoothed.shape == box.shape and smoothed[box].mean() > smoothed[~box].mean()


def test_foreground_baseline_on_synthetic_beats_chance_without_knowing_defects(tiny_meta, capsys):
    table = foreground_baseline.main(["--root", str(tiny_meta), "--classes", "ball", "box"])
    assert set(table) == {"ball", "box"}
    for row in table.values():
        assert set(row) == {"p_auroc", "aupro_30", "aupro_01"}
        assert all(0.0 <= value <= 1.0 for value in row.values())
        assert row["p_auroc"] > 0.5  # defects lie on the object: the footprint alone ranks them above the table
    assert "| mean |" in capsys.readouterr().out
