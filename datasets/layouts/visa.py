"""The VisA layout (``dataset.layout: visa``), RGB only: IUF's second 2D benchmark, read as released.

The official split table ``<root>/split_csv/1cls.csv`` decides every sample::

    object,split,label,image,mask
    candle,train,normal,candle/Data/Images/Normal/0836.JPG,
    candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png

``split`` is ``train``/``test``, ``label`` is ``normal``/``anomaly`` (records get ``label_name`` ``good`` /
``anomaly``); paths are relative to the root. VisA's masks store a defect's id (1, 2, ...), not 255:
:func:`datasets.io.read_mask` counts every non-zero pixel as defect. The scan refuses, with a
:class:`DataError` naming the table and its line: a missing table or column, an unknown split or label,
an anomalous training sample, an anomalous test sample without a mask, a normal sample with one, and a
listed image or mask that is not on disk.
"""

from __future__ import annotations

import csv
from pathlib import Path

from datasets.layouts import register_layout
from datasets.meta import GOOD, TEST_SPLIT
from utils.errors import DataError

SPLIT_TABLE = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
LABEL_NAMES = {"normal": GOOD, "anomaly": "anomaly"}


def _read_rows(table: Path) -> list[dict[str, str]]:
    if not table.is_file():
        raise DataError(f"unknown layout: no split table {table} (VisA's split_csv/1cls.csv)")
    with table.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{table}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        return list(reader)


def _record(root: Path, row: dict[str, str], where: str) -> dict:
    """The meta record of one table row, checked; ``where`` names the table and line in messages."""
    split, label, mask = row["split"].strip(), row["label"].strip(), (row["mask"] or "").strip()
    if split not in ("train", TEST_SPLIT):
        raise DataError(f"{where}: unknown split '{split}' (train or test)")
    if label not in LABEL_NAMES:
        raise DataError(f"{where}: unknown label '{label}' ({' or '.join(LABEL_NAMES)})")
    defective = label == "anomaly"
    if defective and split != TEST_SPLIT:
        raise DataError(f"{where}: an anomalous sample in the training split")
    if defective != bool(mask):
        raise DataError(f"{where}: {'an anomalous sample without' if defective else 'a normal sample with'} a mask")
    record = {"filename": row["image"].strip(), "label": int(defective), "label_name": LABEL_NAMES[label],
              "clsname": row["object"].strip(), "split": split}
    if mask:
        record["maskname"] = mask
    for key in ("filename", "maskname"):
        if key in record and not (root / record[key]).is_file():
            raise DataError(f"{where}: listed file {root / record[key]} not found")
    return record


@register_layout("visa")
def scan_visa(root: Path) -> tuple[list[dict], list[dict]]:
    """Train and test records of the split table's rows, by class then path.

    Raises:
        DataError: a malformed table or a listed file missing (module docstring).
    """
    table = root / SPLIT_TABLE
    records = [_record(root, row, f"{table} line {line}") for line, row in enumerate(_read_rows(table), start=2)]
    records.sort(key=lambda r: (r["clsname"], r["filename"]))
    train = [r for r in records if r["split"] != TEST_SPLIT]
    return train, [r for r in records if r["split"] == TEST_SPLIT]
