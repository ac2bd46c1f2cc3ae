"""Foreground baseline: the pixel metrics of a map that only says "this pixel is on the object".

The map knows nothing about defects: it is the object footprint (every point that is not on the
dominant background plane, :func:`datasets.depth.remove_background_plane`), Gaussian-smoothed. When
defects lie on the object and the object covers a small part of the image, such a map already scores
a high P-AUROC and AUPRO. A method's pixel metrics mean something about anomaly detection only where
they beat this baseline; on Synthetic3D, where each object covers a small part of the frame, they must
be read against it (README "Results on Synthetic3D").

``python benchmarks/foreground_baseline.py [--root data/Synthetic3D] [--classes ball bowl ...] [--sigma 2]``
prints per-class P-AUROC, AUPRO@0.3 and AUPRO@0.01 and their means.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from datasets import read_meta  # noqa: E402
from datasets.depth import remove_background_plane  # noqa: E402
from datasets.io import read_mask, read_xyz  # noqa: E402
from datasets.meta import write_meta  # noqa: E402
from utils.metrics import aupro, pixel_auroc  # noqa: E402


def foreground_map(xyz: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Smoothed object footprint of an organised cloud.

    Args:
        xyz: ``(H, W, 3)`` float32 points in metres, ``(0, 0, 0)`` = missing.
        sigma: Gaussian σ in pixels (0 = the binary footprint).
        seed: RANSAC seed of the plane fit.

    Returns:
        ``(H, W)`` float32 in [0, 1]: 1 on the object, 0 on the background plane and missing points.
    """
    footprint = (remove_background_plane(xyz, np.random.default_rng(seed))[..., 2] != 0).astype(np.float32)
    return cv2.GaussianBlur(footprint, (0, 0), sigma) if sigma > 0 else footprint


def class_metrics(root: Path, records: list[dict], sigma: float) -> dict[str, float]:
    """P-AUROC and AUPRO of the foreground map over one class's test records."""
    maps, masks = [], []
    for record in records:
        fg = foreground_map(read_xyz(root / record["xyzname"]), sigma)
        maps.append(fg)
        masks.append(read_mask(root / record["maskname"]) if record["label"] else np.zeros(fg.shape, bool))
    masks_arr, maps_arr = np.stack(masks), np.stack(maps)
    return {
        "p_auroc": pixel_auroc(masks_arr, maps_arr),
        "aupro_30": aupro(masks_arr, maps_arr, 0.3),
        "aupro_01": aupro(masks_arr, maps_arr, 0.01),
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print the baseline's per-class table and means; return ``{class: metrics}``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "data" / "Synthetic3D")
    parser.add_argument("--classes", nargs="*", default=None, help="default: every class of the test meta")
    parser.add_argument("--sigma", type=float, default=2.0, help="Gaussian sigma in pixels")
    args = parser.parse_args(argv)
    if not (args.root / "test.jsonl").is_file():
        write_meta(args.root)
    test = read_meta(args.root / "test.jsonl")
    classes = args.classes or sorted({r["clsname"] for r in test})
    table = {c: class_metrics(args.root, [r for r in test if r["clsname"] == c], args.sigma) for c in classes}
    print("| class | P-AUROC | AUPRO@30% | AUPRO@1% |\n|---|---|---|---|")
    mean = {k: float(np.mean([row[k] for row in table.values()])) for k in table[classes[0]]}
    for name, row in [*table.items(), ("mean", mean)]:
        print(f"| {name} | {100 * row['p_auroc']:.1f} | {100 * row['aupro_30']:.1f} | {100 * row['aupro_01']:.1f} |")
    return table


if __name__ == "__main__":
    main()
