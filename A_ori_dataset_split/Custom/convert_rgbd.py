r"""Turn a depth camera's RGB + depth images and pinhole intrinsics into one split folder of the MVTec 3D-AD layout.

Usage::

    python A_ori_dataset_split/Custom/convert_rgbd.py --rgb cam/rgb --depth cam/depth \
        --out data/MyParts/bracket/test/scratch --fx 615.2 --fy 615.4 --cx 319.5 --cy 239.1 \
        [--depth-scale 0.001] [--masks cam/masks]

Files are matched by stem (``cam/rgb/0007.jpg`` ↔ ``cam/depth/0007.png`` ↔ ``cam/masks/0007.png``); each
sample becomes ``<out>/rgb/NAME.png``, ``<out>/xyz/NAME.tiff`` and, with ``--masks``, ``<out>/gt/NAME.png``.
Point ``--out`` at ``<root>/<class>/train/good``, ``<root>/<class>/test/good`` or ``<root>/<class>/test/<defect>``
(one run per folder), then run ``A_ori_dataset_split/MVTec_3D-AD/build_meta.py --root <root>``.

Inputs, the back-projection and the refusals: :mod:`datasets.rgbd_camera`. Exit code 2, one line naming the file
or stems, on a refusal; nothing is written then.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from datasets.rgbd_camera import (  # noqa: E402
    DEFAULT_DEPTH_SCALE,
    DEPTH_SUFFIXES,
    INTRINSIC_FLAGS,
    RGB_SUFFIXES,
    Intrinsics,
    convert_rgbd,
    intrinsics_from_flags,
)
from utils.errors import IUMADError, report_error  # noqa: E402

__all__ = ["Intrinsics", "convert_rgbd", "parse_args", "main"]

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rgb", required=True, type=Path, help=f"folder of RGB images ({', '.join(RGB_SUFFIXES)})")
    parser.add_argument(
        "--depth",
        required=True,
        type=Path,
        help=f"folder of depth images or (H, W, 3) clouds ({', '.join(DEPTH_SUFFIXES)})",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="new or empty split folder, e.g. <root>/<class>/train/good"
    )
    for name in INTRINSIC_FLAGS:
        parser.add_argument(
            f"--{name}", type=float, default=None, help=f"intrinsic {name} in pixels (for depth images)"
        )
    parser.add_argument(
        "--depth-scale",
        type=float,
        default=DEFAULT_DEPTH_SCALE,
        help=f"metres per depth unit (default {DEFAULT_DEPTH_SCALE}: millimetres)",
    )
    parser.add_argument("--masks", type=Path, default=None, help="folder of defect masks (for test/<defect>)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; returns the exit code (2 on a known error)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        intrinsics = intrinsics_from_flags(args.fx, args.fy, args.cx, args.cy)
        convert_rgbd(args.rgb, args.depth, args.out, intrinsics, args.depth_scale, args.masks)  # logs what it wrote
    except IUMADError as exc:
        return report_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
