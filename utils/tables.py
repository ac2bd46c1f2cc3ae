"""The one home of results tables: ``results.md``, the console summary, and the helpers other tables use.

:func:`percent` and :func:`markdown_table` format cells and tables; :func:`seed_summary` and
:func:`comparison_markdown` make ``tools/compare.py``'s statistics over seeds and its table.
Both run formatters read the ``results.json`` structure::

    {"classes": [class, ...],                     # in the order they were learned
     "steps": [{"step": k, "classes": [new classes of step k],
                "per_class": {class: {metric_key: float}},   # every class seen so far
                "mean": {metric_key: float}}, ...],
     "R": {metric_key: [[float | None] * n_classes] * n_steps},
     "forgetting": {metric_key: float | None},
     "final": {metric_key: float}}                # mean over classes after the last step

Metric keys are fused metrics (``i_auroc``, ``p_auroc``, ``aupro_30``, ``aupro_01``) or per-modality
ones (``rgb.i_auroc``, ``depth.aupro_30``). Values are fractions in [0, 1]; tables show percent with
one decimal and the forgetting measure in percentage points. ``None`` / NaN show as ``-``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "metric_label", "percent", "markdown_table", "format_results_markdown", "format_final_table", "seed_summary",
    "comparison_markdown",
]

_FUSED_LABELS = {
    "i_auroc": "I-AUROC", "p_auroc": "P-AUROC", "aupro_30": "AUPRO@30%", "aupro_01": "AUPRO@1%",
    "routing": "routed right",  # with class adapters: test images scored by their own class's adapters
}
_MISSING = "-"


def metric_label(key: str) -> str:
    """Column title of a metric key: ``"aupro_30"`` -> ``"AUPRO@30%"``, ``"rgb.i_auroc"`` -> ``"I-AUROC (rgb)"``."""
    modality, _, metric = key.rpartition(".")
    label = _FUSED_LABELS.get(metric, metric)
    return f"{label} ({modality})" if modality else label


def _order(keys: Iterable[str]) -> list[str]:
    """Sort metric keys: fused before per-modality, known metrics in table order, then by name."""
    rank = {key: i for i, key in enumerate(_FUSED_LABELS)}

    def sort_key(key: str) -> tuple[int, str, int, str]:
        modality, _, metric = key.rpartition(".")
        return (1 if modality else 0, modality, rank.get(metric, len(rank)), metric)

    return sorted(set(keys), key=sort_key)


def _is_missing(value: Any) -> bool:
    """True for ``None`` and NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def percent(value: Any) -> str:
    """A fraction as percent with one decimal; ``None`` / NaN as ``-``."""
    return _MISSING if _is_missing(value) else f"{100.0 * float(value):.1f}"


def _require(mapping: Any, key: str, where: str, kind: type) -> Any:
    """``mapping[key]`` checked to be of type ``kind``; ValueError naming ``where`` otherwise."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"results: expected {where} to be a dict, found {type(mapping).__name__}")
    if key not in mapping:
        raise ValueError(f"results: {where} is missing the key {key!r} (found keys {sorted(mapping)})")
    value = mapping[key]
    if not isinstance(value, kind):
        raise ValueError(f"results: expected {where}[{key!r}] to be a {kind.__name__}, found {type(value).__name__}")
    return value


def _checked_steps(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Validate the parts of ``results`` the tables use; return its steps."""
    _require(results, "classes", "results", list)
    _require(results, "forgetting", "results", dict)
    _require(results, "final", "results", dict)
    steps = _require(results, "steps", "results", list)
    if not steps:
        raise ValueError("results: expected at least one step in results['steps'], found none")
    for i, step in enumerate(steps):
        where = f"results['steps'][{i}]"
        _require(step, "step", where, int)
        _require(step, "classes", where, list)
        _require(step, "mean", where, dict)
        for cls, values in _require(step, "per_class", where, dict).items():
            if not isinstance(values, Mapping):
                raise ValueError(f"results: expected {where}['per_class'][{cls!r}] to be a dict of metrics")
    return steps


def _final_classes(results: Mapping[str, Any], last: Mapping[str, Any]) -> list[str]:
    """Classes of the last step: in learned order, then any others in their own order."""
    per_class = last["per_class"]
    ordered = [cls for cls in results["classes"] if cls in per_class]
    return ordered + [cls for cls in per_class if cls not in ordered]


def _final_columns(last: Mapping[str, Any], final: Mapping[str, Any]) -> list[str]:
    """Fused metrics of the last step plus the per-modality I-AUROC columns when present."""
    keys = {key for values in last["per_class"].values() for key in values} | set(final)
    return _order(key for key in keys if "." not in key or key.rpartition(".")[2] == "i_auroc")


def _per_class_rows(results: Mapping[str, Any], last: Mapping[str, Any], columns: list[str]) -> list[list[str]]:
    """One row per class of the last step: the class name and its metrics of ``columns`` in percent."""
    per_class = last["per_class"]
    return [[cls] + [percent(per_class[cls].get(key)) for key in columns] for cls in _final_classes(results, last)]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a GitHub markdown table; the first column left-aligned, the others right-aligned."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    align = ["---"] + ["---:"] * (len(header) - 1)
    return [line(header), "|" + "|".join(align) + "|", *(line(row) for row in rows)]


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a space-aligned plain-text table; the first column left-aligned, the others right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))]).rstrip()

    return [line(header), *(line(row) for row in rows)]


def format_results_markdown(results: Mapping[str, Any]) -> str:
    """Markdown of a run: per-step means, final per-class table, forgetting measure.

    Args:
        results: the ``results.json`` structure (see the module docstring).

    Returns:
        Markdown text ending with a newline.

    Raises:
        ValueError: a key the tables need is missing or has the wrong type.
    """
    steps = _checked_steps(results)
    last, final, forgetting = steps[-1], results["final"], results["forgetting"]
    lines = ["# Results", ""]

    mean_keys = _order(key for step in steps for key in step["mean"] if "." not in key)
    lines += ["## Mean over the classes seen after each step (%)", ""]
    lines += markdown_table(
        ["Step", "New classes", "Seen", *(metric_label(key) for key in mean_keys)],
        (
            [str(step["step"]), ", ".join(step["classes"]), str(len(step["per_class"]))]
            + [percent(step["mean"].get(key)) for key in mean_keys]
            for step in steps
        ),
    )

    columns = _final_columns(last, final)
    final_means = {**last["mean"], **final}
    rows = _per_class_rows(results, last, columns)
    rows.append(["**Mean**"] + [percent(final_means.get(key)) for key in columns])
    lines += ["", f"## Per class after the last step (step {last['step']}, %)", ""]
    lines += markdown_table(["Class", *(metric_label(key) for key in columns)], rows)

    lines += ["", "## Forgetting measure FM (percentage points; lower is better, negative = improved)", ""]
    if any(not _is_missing(value) for value in forgetting.values()):
        fm_keys = _order(forgetting)
        lines += markdown_table(
            ["", *(metric_label(key) for key in fm_keys)], [["FM", *(percent(forgetting[key]) for key in fm_keys)]]
        )
    else:
        lines.append("No forgetting measure (it needs at least two steps).")
    return "\n".join(lines) + "\n"


def format_final_table(results: Mapping[str, Any]) -> str:
    """Compact plain-text table of the last step for the console: one row per class, the mean, FM.

    Args:
        results: the ``results.json`` structure (see the module docstring).

    Returns:
        The table as text (no trailing newline).

    Raises:
        ValueError: a key the table needs is missing or has the wrong type.
    """
    steps = _checked_steps(results)
    last, final, forgetting = steps[-1], results["final"], results["forgetting"]
    columns = _final_columns(last, final)
    final_means = {**last["mean"], **final}
    rows = _per_class_rows(results, last, columns)
    rows.append(["mean"] + [percent(final_means.get(key)) for key in columns])
    if any(not _is_missing(forgetting.get(key)) for key in columns):
        rows.append(["FM"] + [percent(forgetting.get(key)) for key in columns])
    title = f"Results after step {last['step']} ({len(last['per_class'])} classes, %)"
    return "\n".join([title, *_text_table(["class", *(metric_label(key) for key in columns)], rows)])


#: The columns of the comparison table: final-step metrics, and the metrics whose forgetting it shows.
COMPARISON_COLUMNS = ("i_auroc", "p_auroc", "aupro_30")
COMPARISON_FM_COLUMNS = ("i_auroc", "aupro_30")


def seed_summary(per_seed: dict[int, dict]) -> dict:
    """Mean and sample std over seeds of the final metrics and the forgetting; mean I-AUROC per step.

    Returns:
        ``{"final", "final_std", "forgetting", "forgetting_std", "steps", "seeds"}`` (``seeds``: seed → results);
        a metric missing (or NaN) in any seed's run is left out.
    """
    runs = list(per_seed.values())
    summary: dict = {"seeds": {str(s): r for s, r in per_seed.items()}}
    for part in ("final", "forgetting"):
        values = {k: [r[part].get(k) for r in runs] for k in runs[0][part]}
        values = {k: np.array(v, dtype=float) for k, v in values.items() if None not in v}
        values = {k: v for k, v in values.items() if not np.isnan(v).any()}
        summary[part] = {k: float(v.mean()) for k, v in values.items()}
        summary[part + "_std"] = {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()}
    summary["steps"] = []
    for j, step in enumerate(runs[0]["steps"]):
        values = np.array([r["steps"][j]["mean"].get("i_auroc") for r in runs], dtype=float)  # None -> NaN
        mean = float(np.nanmean(values)) if not np.isnan(values).all() else None
        summary["steps"].append({"step": step["step"], "mean": {"i_auroc": mean}})
    return summary


def _mean_std_cell(results: dict, part: str, key: str) -> str:
    """``percent`` of ``results[part][key]``, with `` ± std`` when ``results`` is a seed summary."""
    text = percent(results[part].get(key))
    std = results.get(part + "_std", {}).get(key)
    return text if std is None or text == "-" else f"{text} ± {100.0 * std:.1f}"


def comparison_markdown(table: dict[str, dict[str, dict]], setting: str, reference: dict[str, float] | None) -> str:
    """Final-step metrics and forgetting per variant × modality, and the memory-bank rows, as a markdown table.

    Args:
        table: row (variant) → modality → results (one run's ``results.json``, or a :func:`seed_summary`).
        setting: the setting's config path, named in the title.
        reference: map → mean I-AUROC of the memory bank, or ``None``.
    """
    header = ["variant", "modality", *COMPARISON_COLUMNS, *(f"FM {c}" for c in COMPARISON_FM_COLUMNS)]
    rows = [
        [variant, modality, *(_mean_std_cell(results, "final", c) for c in COMPARISON_COLUMNS),
         *(_mean_std_cell(results, "forgetting", c) for c in COMPARISON_FM_COLUMNS)]
        for variant, cells in table.items()
        for modality, results in cells.items()
    ]
    rows += [["memory bank (kNN, no training)", modality, percent(value), *["-"] * (len(header) - 3)]
             for modality, value in (reference or {}).items()]
    title = f"Final step of `{setting}` (%, mean over classes; FM = forgetting, lower is better)"
    if any("final_std" in results for cells in table.values() for results in cells.values()):
        title += "; mean ± sample std over seeds"
    return "\n".join([title, "", *markdown_table(header, rows)]) + "\n"
