"""JSON-lines sample tables (meta files) of a dataset, built by its layout's scanner (DESIGN §4).

One record per sample, paths relative to the dataset root::

    {"filename": "bagel/test/crack/rgb/000.png", "xyzname": "bagel/test/crack/xyz/000.tiff",
     "maskname": "bagel/test/crack/gt/000.png", "label": 1, "label_name": "crack",
     "clsname": "bagel", "split": "test"}

``maskname`` is present only for defective test samples, ``xyzname`` only in layouts with point clouds;
``split`` is ``train`` / ``validation`` / ``test`` (train.jsonl holds train/good + validation/good). Which
folders make the records is the layout's (:mod:`datasets.layouts`, ``dataset.layout``); every layout's
records are refused, with a :class:`DataError` naming both files, when an rgb image's content (SHA-1)
appears in both train and test — a test image leaked into training.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Sequence
from pathlib import Path

from utils.errors import DataError
from utils.fileio import atomic_write_text, file_digest

__all__ = ["TRAIN_SPLITS", "TEST_SPLIT", "GOOD", "DEFAULT_LAYOUT", "build_meta", "write_meta", "read_meta",
           "load_meta"]

LOGGER = logging.getLogger(__name__)

TRAIN_SPLITS = ("train", "validation")
TEST_SPLIT = "test"
GOOD = "good"
DEFAULT_LAYOUT = "mvtec3d"
REQUIRED_KEYS = ("filename", "label", "label_name", "clsname")
#: The keys of a record that :class:`datasets.RGBDDataset` reads (``label_name`` is for people and tables).
SAMPLE_KEYS = tuple(key for key in REQUIRED_KEYS if key != "label_name")


def _check_no_leak(root: Path, train: list[dict], test: list[dict]) -> None:
    train_hashes = {file_digest(root / rec["filename"], "sha1"): rec["filename"] for rec in train}
    for rec in test:
        digest = file_digest(root / rec["filename"], "sha1")
        if digest in train_hashes:
            raise DataError(
                f"test image {root / rec['filename']} has the same content as training image "
                f"{root / train_hashes[digest]}: a test sample leaked into training"
            )


def build_meta(root: str | Path, layout: str = DEFAULT_LAYOUT) -> tuple[list[dict], list[dict]]:
    """Scan a dataset with its layout's scanner and check that no test image leaked into training.

    Args:
        root: dataset root.
        layout: a name of :func:`datasets.layouts.layout_names` (``dataset.layout``).

    Returns:
        ``(train_records, test_records)``, sorted by class then path.

    Raises:
        DataError: the layout's refusals (its module's docstring) or a leaked test image.
        ConfigError: an unknown layout.
    """
    from datasets.layouts import layout_scanner  # the layouts import this module

    scan = layout_scanner(layout)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root is not a folder: {root}")
    train, test = scan(root)
    _check_no_leak(root, train, test)
    classes = len({r["clsname"] for r in train})
    LOGGER.info("scanned %s (%s layout): %d classes, %d train, %d test samples", root, layout, classes,
                len(train), len(test))
    return train, test


def write_meta(
    root: str | Path, out_dir: str | Path | None = None, layout: str = DEFAULT_LAYOUT
) -> tuple[Path, Path]:
    """Scan ``root`` (:func:`build_meta`); write ``train.jsonl`` and ``test.jsonl`` into ``out_dir`` (default ``root``).

    Returns:
        Paths of the written train and test files.
    """
    train, test = build_meta(root, layout)
    out_dir = Path(root if out_dir is None else out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_path, test_path = out_dir / "train.jsonl", out_dir / "test.jsonl"
    # Atomic, test file first: a reader that finds train.jsonl also finds a complete test.jsonl.
    for path, records in ((test_path, test), (train_path, train)):
        atomic_write_text(path, "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in records))
    return train_path, test_path


def read_meta(path: str | Path) -> list[dict]:
    """Read a JSON-lines meta file.

    Raises:
        DataError: missing file, a line that is not a JSON object, or a record without a required key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"meta file not found: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise DataError(f"{path}:{number}: record lacks key(s) {missing}")
        records.append(record)
    return records


def _files(records: list[dict]) -> set[str]:
    """Normalised rgb and xyz paths of meta records (``./a//b`` and ``a/b`` are the same file)."""
    return {posixpath.normpath(r[key]) for r in records for key in ("filename", "xyzname") if r.get(key)}


def _check_split(train: list[dict], test: list[dict], meta_dir: Path) -> None:
    """Refuse meta files (also hand-made ones) that put a test image or a defective image into training."""
    leaked = sorted(_files(train) & _files(test))
    if leaked:
        raise DataError(f"{meta_dir / 'train.jsonl'} contains test images, e.g. {leaked[0]} ({len(leaked)} in all)")
    defective = [r["filename"] for r in train if int(r["label"]) != 0]
    if defective:
        raise DataError(f"{meta_dir / 'train.jsonl'} contains defective images, e.g. {defective[0]}")


def load_meta(
    root: str | Path, meta_dir: str | Path | None, classes: Sequence[str], layout: str = DEFAULT_LAYOUT
) -> tuple[list[dict], list[dict]]:
    """The checked train and test records of a dataset; the meta files are built first where missing.

    Args:
        root: dataset root (``dataset.root``).
        meta_dir: folder of ``train.jsonl``/``test.jsonl`` (``dataset.meta_dir``); ``None``: ``root``.
        classes: classes that must have train and test samples.
        layout: the scanner that builds missing meta files (``dataset.layout``).

    Raises:
        DataError: the root is missing; the files hold a test or defective image in training (also hand-made
            files); a class of ``classes`` has no train or no test sample (naming the classes there).
        ConfigError: an unknown layout.
    """
    from datasets.layouts import layout_scanner

    layout_scanner(layout)  # an unknown layout is an error also where the meta files exist
    root = Path(root)
    meta_dir = Path(meta_dir or root)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root} (dataset.root)")
    if not (meta_dir / "train.jsonl").is_file() or not (meta_dir / "test.jsonl").is_file():
        LOGGER.info("building meta files in %s", meta_dir)
        write_meta(root, meta_dir, layout)
    train, test = read_meta(meta_dir / "train.jsonl"), read_meta(meta_dir / "test.jsonl")
    _check_split(train, test, meta_dir)
    for split, records in (("train", train), ("test", test)):
        present = {r["clsname"] for r in records}
        missing = [name for name in classes if name not in present]
        if missing:
            raise DataError(
                f"class '{missing[0]}' has no {split} samples in {meta_dir / (split + '.jsonl')}; "
                f"classes there: {', '.join(sorted(present))}"
            )
    return train, test
