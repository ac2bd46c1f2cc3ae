"""Write the Parts3D development dataset (6 classes, RGB + organised point clouds) in the MVTec 3D-AD layout.

Usage::

    python A_ori_dataset_split/Parts3D/make_parts_3d.py --out data/Parts3D [--seed 0] [--size 128]
        [--train-per-class 30] [--test-per-class 90] [--classes bolt gear] [--meta]

The generator itself is :mod:`datasets.parts3d` (it needs scikit-image, from ``requirements-dev.txt``);
``--meta`` also writes ``train.jsonl``/``test.jsonl`` into ``--out`` (same as running
``A_ori_dataset_split/MVTec_3D-AD/build_meta.py --root <out>``).
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
from datasets.parts3d import CLASS_NAMES, DEFAULT_GENERATION, MIN_SIZE, make_parts_dataset  # noqa: E402
from utils.errors import IUMADError, report_error  # noqa: E402

LOGGER = logging.getLogger("make_parts_3d")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = DEFAULT_GENERATION
    parser.add_argument("--out", required=True, type=Path, help="new or empty output folder")
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="generation seed (same seed -> same bytes)")
    parser.add_argument("--size", type=int, default=defaults["size"], help=f"image side in pixels (>= {MIN_SIZE})")
    parser.add_argument("--train-per-class", type=int, default=defaults["train_per_class"],
                        help="training images per class (validation adds a tenth, at least 2)")
    parser.add_argument("--test-per-class", type=int, default=defaults["test_per_class"],
                        help="test images per class (a third good)")
    parser.add_argument("--classes", nargs="+", default=None, help=f"subset of {', '.join(CLASS_NAMES)}")
    parser.add_argument("--meta", action="store_true", help="also write train.jsonl / test.jsonl into --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate the dataset; returns the exit code (2 on a known error)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        out = make_parts_dataset(
            args.out,
            size=args.size,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            seed=args.seed,
            classes=args.classes,
        )
        if args.meta:
            write_meta(out)
    except IUMADError as exc:
        return report_error(exc)
    LOGGER.info("dataset ready at %s (%.1f s)", out, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
