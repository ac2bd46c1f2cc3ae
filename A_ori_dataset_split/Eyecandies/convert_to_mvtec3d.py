"""Convert an Eyecandies download into the MVTec 3D-AD layout (see :mod:`datasets.eyecandies`).

Usage::

    python A_ori_dataset_split/Eyecandies/convert_to_mvtec3d.py --root data/Eyecandies_raw --out data/Eyecandies
        [--image-index 5] [--compress]

Then, typically: ``preprocess.py`` (remove the conveyor plane) and ``build_meta.py`` on the result.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from datasets.eyecandies import convert_eyecandies  # noqa: E402
from utils.errors import IUMADError, report_error  # noqa: E402

LOGGER = logging.getLogger("convert_to_mvtec3d")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="Eyecandies root (CandyCane/, ...)")
    parser.add_argument("--out", required=True, type=Path, help="new or empty output folder")
    parser.add_argument("--image-index", type=int, default=5, help="RGB image: 0 all lights ... 5 global lighting")
    parser.add_argument("--compress", action="store_true", help="deflate-compress the xyz TIFFs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; returns the exit code (2 on a known error)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = convert_eyecandies(args.root, args.out, image_index=args.image_index, compress=args.compress)
    except IUMADError as exc:
        return report_error(exc)
    LOGGER.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
