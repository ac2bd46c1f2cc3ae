"""The files ``tools/predict.py`` writes for a folder of inputs.

``<output>/predictions.csv`` and ``predictions.jsonl`` (one row per predicted input, :data:`COLUMNS`),
``skipped.csv`` (``path``, ``reason``: inputs that could not be read), and per input
``maps/<name>.tiff`` (float32 anomaly map at the input's resolution), ``overlays/<name>.png`` and, for an
input given with its point cloud, ``clouds/<name>.ply`` (its valid points coloured by the map,
:mod:`utils.anomaly_cloud`; none for a cloud without valid point). The ``cloud`` column is empty for
inputs without a PLY.
Everything is written into ``<output>.partial`` and moved to ``<output>`` by :meth:`PredictionReport.close`,
so an interrupted run never leaves a half-written predictions folder behind.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from datasets.scan_folder import ScanInput
from utils.anomaly_cloud import write_anomaly_cloud
from utils.errors import ConfigError

__all__ = ["COLUMNS", "PredictionReport"]

COLUMNS = (
    "path", "xyz", "class", "class_probability", "score", "threshold", "false_alarm_rate", "decision", "score_rgb",
    "score_depth", "map", "overlay", "cloud",
)


class PredictionReport:
    """Collects the rows and files of one prediction run.

    Args:
        output: the predictions folder.
        overwrite: replace an existing ``output`` (else it is an error).

    Raises:
        ConfigError: ``output`` exists and ``overwrite`` is False.
    """

    def __init__(self, output: Path, overwrite: bool) -> None:
        self.output = Path(output)
        if self.output.exists() and not overwrite:
            raise ConfigError(f"{self.output} already exists; pass --overwrite to replace it, or another --output")
        self.staging = self.output.with_name(self.output.name + ".partial")
        shutil.rmtree(self.staging, ignore_errors=True)  # left by an interrupted run of ours
        self.staging.mkdir(parents=True)
        self.rows: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []

    def add(self, scan: ScanInput, row: dict[str, Any], amap: np.ndarray, overlay_png: bytes,
            xyz: np.ndarray | None, vmax: float) -> None:
        """Record one prediction.

        Args:
            scan: the input.
            row: the :data:`COLUMNS` except path, xyz, map, overlay and cloud.
            amap: ``(H, W)`` float anomaly map at the input's resolution.
            overlay_png: the overlay picture's PNG bytes.
            xyz: ``(H, W, 3)`` point cloud in metres to write coloured by ``amap`` (if it has a valid point),
                or ``None`` for no PLY.
            vmax: the overlay's hottest map value, the PLY's too.
        """
        map_name, overlay_name = f"maps/{scan.name}.tiff", f"overlays/{scan.name}.png"
        for name in (map_name, overlay_name):
            (self.staging / name).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(self.staging / map_name, np.ascontiguousarray(amap, dtype=np.float32))
        (self.staging / overlay_name).write_bytes(overlay_png)
        cloud_name = f"clouds/{scan.name}.ply" if xyz is not None else ""
        if xyz is not None and not write_anomaly_cloud(self.staging / cloud_name, xyz, amap, vmax):
            cloud_name = ""  # no valid point, no file
        full = {"path": str(scan.rgb), "xyz": str(scan.xyz) if scan.xyz else "", **row,
                "map": map_name, "overlay": overlay_name, "cloud": cloud_name}
        self.rows.append({key: full.get(key, "") for key in COLUMNS})

    def skip(self, scan: ScanInput, reason: str) -> None:
        """Record an input that could not be predicted, and why."""
        self.skipped.append({"path": str(scan.rgb), "reason": reason})

    @staticmethod
    def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def close(self) -> Path:
        """Write the tables and move the folder into place; returns ``output``."""
        (self.staging / "predictions.csv").write_text(self._csv(self.rows, COLUMNS), encoding="utf-8")
        lines = "".join(json.dumps(row) + "\n" for row in self.rows)
        (self.staging / "predictions.jsonl").write_text(lines, encoding="utf-8")
        (self.staging / "skipped.csv").write_text(self._csv(self.skipped, ("path", "reason")), encoding="utf-8")
        old = self.output.with_name(self.output.name + ".old")
        if self.output.exists():
            self.output.rename(old)
        self.staging.rename(self.output)
        shutil.rmtree(old, ignore_errors=True)
        return self.output
