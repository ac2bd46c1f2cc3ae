"""Remove the background plane from every point cloud of a dataset, writing a new dataset root.

Usage::

    python A_ori_dataset_split/MVTec_3D-AD/preprocess.py --root data/MVTec_3D-AD --out data/MVTec_3D-AD_clean
        [--seed 0] [--workers 4]

RANSAC plane fit on the valid points of the 10-px image border (4 mm inlier threshold), then every
point within 5 mm of the plane becomes (0, 0, 0) — the cleaning used across the MVTec 3D-AD
literature (:func:`datasets.depth.remove_background_plane`). rgb/gt and all other files are copied.
Refuses ``--out`` equal to (or nested with) ``--root``: never in place.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from datasets.preprocess import PlaneRemoval, remove_background_tree  # noqa: E402
from utils.errors import IUMADError, report_error  # noqa: E402

LOGGER = logging.getLogger("preprocess")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    defaults = PlaneRemoval()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="source dataset root (MVTec 3D-AD layout)")
    parser.add_argument("--out", required=True, type=Path, help="new or empty output root (not --root)")
    parser.add_argument("--seed", type=int, default=0, help="RANSAC seed")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--border", type=int, default=defaults.border, help="border width in pixels")
    parser.add_argument("--fit-threshold", type=float, default=defaults.fit_threshold, help="RANSAC inlier m")
    parser.add_argument("--remove-threshold", type=float, default=defaults.remove_threshold, help="removal m")
    parser.add_argument("--iterations", type=int, default=defaults.iterations, help="RANSAC hypotheses")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Clean the dataset; returns the exit code (2 on a known error)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = PlaneRemoval(args.border, args.fit_threshold, args.remove_threshold, args.iterations)
    try:
        out = remove_background_tree(args.root, args.out, seed=args.seed, params=params, workers=args.workers)
    except IUMADError as exc:
        return report_error(exc)
    LOGGER.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
