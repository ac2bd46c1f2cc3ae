"""JSON-lines sample tables for a dataset in the MVTec 3D-AD layout (DESIGN §4).

One record per sample, paths relative to the dataset root::

    {"filename": "bagel/test/crack/rgb/000.png", "xyzname": "bagel/test/crack/xyz/000.tiff",
     "maskname": "bagel/test/crack/gt/000.png", "label": 1, "label_name": "crack",
     "clsname": "bagel", "split": "test"}

``maskname`` is present only for defective test samples; ``split`` is ``train`` / ``validation`` /
``test`` (train.jsonl holds train/good + validation/good). The scan refuses, with a :class:`DataError`
naming the file or folder: a class folder without ``train``/``test``, a split/label folder
without ``rgb``/``xyz``, a non-``good`` folder in a training split, an rgb image without its xyz (or
test mask) partner and vice versa, and an rgb image whose content (SHA-1) appears in both train and
test — a test image leaked into training.

Files at the root (licence, readme, meta files) and extra folders inside a class folder other than
the splits (e.g. ``calibration``) are ignored. Hidden entries (starting with ``.``) are ignored.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from utils.errors import DataError
from utils.fileio import atomic_write_text, file_digest

__all__ = ["TRAIN_SPLITS", "TEST_SPLIT", "GOOD", "build_meta", "write_meta", "read_meta", "scan_class"]

LOGGER = logging.getLogger(__name__)

TRAIN_SPLITS = ("train", "validation")
TEST_SPLIT = "test"
GOOD = "good"
RGB_EXT, XYZ_EXT, MASK_EXT = ".png", ".tiff", ".png"
REQUIRED_KEYS = ("filename", "xyzname", "label", "label_name", "clsname")
#: The keys of a record that :class:`datasets.RGBDDataset` reads (``label_name`` is for people and tables).
SAMPLE_KEYS = tuple(key for key in REQUIRED_KEYS if key != "label_name")


def _visible_children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _stems(folder: Path, ext: str) -> dict[str, Path]:
    return {p.stem: p for p in _visible_children(folder) if p.is_file() and p.suffix.lower() == ext}


def _check_partners(rgb: dict[str, Path], other: dict[str, Path], other_dir: Path, ext: str) -> None:
    for stem, path in rgb.items():
        if stem not in other:
            raise DataError(f"missing partner of {path}: expected {other_dir / (stem + ext)}")
    for stem, path in other.items():
        if stem not in rgb:
            raise DataError(
                f"missing partner of {path}: expected an rgb image {other_dir.parent / 'rgb' / (stem + RGB_EXT)}"
            )


def _scan_label_dir(root: Path, folder: Path, clsname: str, split: str, label_name: str) -> list[dict]:
    """Records of one ``<class>/<split>/<label>`` folder (holding ``rgb``, ``xyz`` and maybe ``gt``)."""
    rgb_dir, xyz_dir, gt_dir = folder / "rgb", folder / "xyz", folder / "gt"
    for needed in (rgb_dir, xyz_dir):
        if not needed.is_dir():
            raise DataError(f"unknown layout: {folder} has no '{needed.name}' folder (expected rgb/ and xyz/)")
    rgb = _stems(rgb_dir, RGB_EXT)
    if not rgb:
        raise DataError(f"no {RGB_EXT} images in {rgb_dir}")
    xyz = _stems(xyz_dir, XYZ_EXT)
    _check_partners(rgb, xyz, xyz_dir, XYZ_EXT)
    defective = split == TEST_SPLIT and label_name != GOOD
    gt: dict[str, Path] = {}
    if defective:
        if not gt_dir.is_dir():
            raise DataError(f"unknown layout: defective test folder {folder} has no 'gt' folder")
        gt = _stems(gt_dir, MASK_EXT)
        _check_partners(rgb, gt, gt_dir, MASK_EXT)
    records = []
    for stem, path in rgb.items():
        record = {
            "filename": path.relative_to(root).as_posix(),
            "xyzname": xyz[stem].relative_to(root).as_posix(),
            "label": int(label_name != GOOD),
            "label_name": label_name,
            "clsname": clsname,
            "split": split,
        }
        if defective:
            record["maskname"] = gt[stem].relative_to(root).as_posix()
        records.append(record)
    return records


def scan_class(root: Path, class_dir: Path) -> tuple[list[dict], list[dict]]:
    """Train (train + validation) and test records of one class folder.

    Args:
        root: dataset root (paths in the records are relative to it).
        class_dir: ``<root>/<class>``.

    Returns:
        ``(train_records, test_records)``.

    Raises:
        DataError: unknown layout or missing partner (module docstring).
    """
    clsname = class_dir.name
    for split in ("train", TEST_SPLIT):
        if not (class_dir / split).is_dir():
            raise DataError(f"unknown layout: class folder {class_dir} has no '{split}' folder")
    train: list[dict] = []
    test: list[dict] = []
    for split in (*TRAIN_SPLITS, TEST_SPLIT):
        split_dir = class_dir / split
        if not split_dir.is_dir():
            continue
        label_dirs = [p for p in _visible_children(split_dir) if p.is_dir()]
        if not label_dirs:
            raise DataError(f"unknown layout: {split_dir} has no label folder (expected good/ ...)")
        for label_dir in label_dirs:
            if split != TEST_SPLIT and label_dir.name != GOOD:
                raise DataError(f"unknown layout: training split folder {label_dir} is not '{GOOD}'")
            records = _scan_label_dir(root, label_dir, clsname, split, label_dir.name)
            (test if split == TEST_SPLIT else train).extend(records)
    return train, test


def _check_no_leak(root: Path, train: list[dict], test: list[dict]) -> None:
    train_hashes = {file_digest(root / rec["filename"], "sha1"): rec["filename"] for rec in train}
    for rec in test:
        digest = file_digest(root / rec["filename"], "sha1")
        if digest in train_hashes:
            raise DataError(
                f"test image {root / rec['filename']} has the same content as training image "
                f"{root / train_hashes[digest]}: a test sample leaked into training"
            )


def build_meta(root: str | Path) -> tuple[list[dict], list[dict]]:
    """Scan a dataset in the MVTec 3D-AD layout.

    Args:
        root: dataset root holding one folder per class.

    Returns:
        ``(train_records, test_records)``, sorted by class then path.

    Raises:
        DataError: see module docstring.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root is not a folder: {root}")
    class_dirs = [p for p in _visible_children(root) if p.is_dir()]
    if not class_dirs:
        raise DataError(f"unknown layout: no class folder in {root}")
    train: list[dict] = []
    test: list[dict] = []
    for class_dir in class_dirs:
        class_train, class_test = scan_class(root, class_dir)
        train.extend(class_train)
        test.extend(class_test)
    _check_no_leak(root, train, test)
    LOGGER.info("scanned %s: %d classes, %d train, %d test samples", root, len(class_dirs), len(train), len(test))
    return train, test


def write_meta(root: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Scan ``root`` and write ``train.jsonl`` and ``test.jsonl`` into ``out_dir`` (default: ``root``).

    Returns:
        Paths of the written train and test files.
    """
    train, test = build_meta(root)
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
