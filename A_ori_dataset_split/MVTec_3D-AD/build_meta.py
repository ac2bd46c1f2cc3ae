"""Write ``train.jsonl`` and ``test.jsonl`` for a dataset in the MVTec 3D-AD layout.

Usage::

    python A_ori_dataset_split/MVTec_3D-AD/build_meta.py --root data/MVTec_3D-AD [--out data/meta/MVTec_3D-AD]

Works for the real MVTec 3D-AD, converted Eyecandies and Synthetic3D. Train = train/good +
validation/good; refuses a leaked test image, a missing rgb/xyz/gt partner and an unknown layout
(see :mod:`datasets.layouts.mvtec3d`); ``--layout`` names another layout of :mod:`datasets.layouts`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from datasets.meta import DEFAULT_LAYOUT, read_meta, write_meta  # noqa: E402
from utils.errors import IUMADError, report_error  # noqa: E402

LOGGER = logging.getLogger("build_meta")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="dataset root (one folder per class)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the meta files (default: --root)")
    parser.add_argument("--layout", default=DEFAULT_LAYOUT,
                        help=f"dataset.layout of the data (default: {DEFAULT_LAYOUT}; datasets/layouts/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build the meta files; returns the exit code (2 on a known error)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for path in write_meta(args.root, args.out, args.layout):
            LOGGER.info("%s: %d records", path, len(read_meta(path)))
    except IUMADError as exc:
        return report_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
