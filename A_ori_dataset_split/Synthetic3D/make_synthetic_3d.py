"""Write the Synthetic3D dataset (10 classes, RGB + organised point clouds) in the MVTec 3D-AD layout.

Usage::

    python A_ori_dataset_split/Synthetic3D/make_synthetic_3d.py --out data/Synthetic3D [--size 128]
        [--train-per-class 30] [--test-per-class 30] [--seed 0] [--classes ball box] [--pose-jitter 0.15]
        [--defect-scale 2]
        [--compress] [--meta] [--if-absent]

The generator itself is :mod:`datasets.synthetic`; ``--meta`` also writes ``train.jsonl``/``test.jsonl``
into ``--out`` (same as running ``A_ori_dataset_split/MVTec_3D-AD/build_meta.py --root <out>``).
``--if-absent`` (used by the Synthetic3D ``run.sh``) keeps a dataset already at ``--out`` when it was made
with the same arguments, and stops with an error naming the differing ones otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from datasets.meta import write_meta  # noqa: E402
from datasets.synthetic import (  # noqa: E402
    CLASS_NAMES,
    DEFAULT_DEFECT_SCALE,
    DEFAULT_GENERATION,
    DEFAULT_POSE_JITTER,
    MIN_SIZE,
    ensure_dataset,
    make_dataset,
)
from utils.errors import IUMADError, report_error  # noqa: E402

LOGGER = logging.getLogger("make_synthetic_3d")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="new or empty output folder")
    defaults = DEFAULT_GENERATION
    parser.add_argument("--size", type=int, default=defaults["size"], help=f"image side in pixels (>= {MIN_SIZE})")
    parser.add_argument("--train-per-class", type=int, default=defaults["train_per_class"],
                        help="training images per class")
    parser.add_argument("--test-per-class", type=int, default=defaults["test_per_class"],
                        help="test images per class (about 1/3 good)")
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="generation seed (same seed -> same bytes)")
    parser.add_argument("--classes", nargs="+", default=None, help=f"subset of {', '.join(CLASS_NAMES)}")
    parser.add_argument("--compress", action="store_true", help="deflate-compress the xyz TIFFs")
    parser.add_argument(
        "--pose-jitter",
        type=float,
        default=DEFAULT_POSE_JITTER,
        help="scale of the pose variation in 0..1 (0 = all objects aligned; 1: shift ±18 mm, rotation ±0.35 rad)",
    )
    parser.add_argument(
        "--defect-scale",
        type=float,
        default=DEFAULT_DEFECT_SCALE,
        help="size factor of the defects in (0, 3] (1: blob radius 9-14 mm, crack width 2.4 mm)",
    )
    parser.add_argument("--meta", action="store_true", help="also write train.jsonl / test.jsonl into --out")
    parser.add_argument(
        "--if-absent", action="store_true", help="keep a dataset made with the same arguments already at --out"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate the dataset; returns the exit code (2 on a known error)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        generate = ensure_dataset if args.if_absent else make_dataset
        out = generate(
            args.out,
            size=args.size,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            seed=args.seed,
            classes=args.classes,
            compress=args.compress,
            pose_jitter=args.pose_jitter,
            defect_scale=args.defect_scale,
        )
        if args.meta:
            write_meta(out)
    except IUMADError as exc:
        return report_error(exc)
    LOGGER.info("dataset ready at %s (%.1f s)", out, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
