"""The run's results: per-step metric records → ``results.json`` / ``results.md`` (schema in README).

Each finished step writes ``step_<k>/metrics.json`` (classes trained, classes seen, per-class
metrics). :func:`build_results` assembles those records into the run's results: the R matrix
(steps × classes, ``None`` where a class was not yet learned), forgetting per metric and the
final-step means. The run-level files are rebuilt from the step records, so a run of all steps and
a run step by step (``--step K``) give the same ``results.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import CheckpointError
from utils.fileio import atomic_write_json, atomic_write_text
from utils.metrics import forgetting_measure
from utils.tables import format_results_markdown

__all__ = ["step_record", "read_step_record", "build_results", "write_results"]


def _mean(per_class: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for metrics in per_class.values() for k in metrics})
    return {k: _nan_to_none(float(np.nanmean([_none_to_nan(m.get(k)) for m in per_class.values()]))) for k in keys}


def step_record(
    step: int, trained: list[str], per_class: dict[str, dict[str, float]], drift: float | None = None
) -> dict[str, Any]:
    """One step's record: classes trained, per-class metrics on every class seen, their means, and the drift.

    ``drift`` is ``‖θ − θ_start‖₂`` over the parameters the step trained (:class:`engine.train_hooks.StepDrift`).
    """
    return {"step": step, "classes": list(trained), "per_class": per_class, "mean": _mean(per_class), "drift": drift}


def read_step_record(path: Path) -> dict[str, Any]:
    """Read a ``metrics.json`` written by an earlier (possibly separate) run of a step."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read step metrics {path}: {exc}") from None


def _none_to_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def build_results(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Assemble step records (in step order) into the results dict of ``results.json``."""
    classes = [c for record in records for c in record["classes"]]
    keys = sorted({k for record in records for m in record["per_class"].values() for k in m})
    matrices: dict[str, list[list[float | None]]] = {}
    forgetting: dict[str, float | None] = {}
    for key in keys:
        table = np.full((len(records), len(classes)), np.nan)
        for i, record in enumerate(records):
            for j, name in enumerate(classes):
                value = record["per_class"].get(name, {}).get(key)
                if value is not None:
                    table[i, j] = value
        matrices[key] = [[_nan_to_none(float(v)) for v in row] for row in table]
        forgetting[key] = _nan_to_none(float(forgetting_measure(table))) if len(records) > 1 else None
    return {
        "classes": classes,
        "steps": records,
        "R": matrices,
        "forgetting": forgetting,
        "drift": [record.get("drift") for record in records],
        "final": dict(records[-1]["mean"]) if records else {},
    }


def write_results(output: Path, results: dict[str, Any]) -> None:
    """Write ``results.json`` and ``results.md`` atomically."""
    atomic_write_json(Path(output) / "results.json", results)
    atomic_write_text(Path(output) / "results.md", format_results_markdown(results))
