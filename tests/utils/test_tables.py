"""Tests of utils/results.py: markdown and console tables from the results.json structure."""

import copy

import pytest

from utils.tables import format_final_table, format_results_markdown, metric_label


def _results():
    """Two steps: bagel + carrot, then cookie; fused metrics and per-modality scores."""
    step0 = {
        "step": 0,
        "classes": ["bagel", "carrot"],
        "per_class": {
            "bagel": {"i_auroc": 0.95, "p_auroc": 0.99, "aupro_30": 0.9, "aupro_01": 0.4, "rgb.i_auroc": 0.8},
            "carrot": {"i_auroc": 0.85, "p_auroc": 0.97, "aupro_30": 0.8, "aupro_01": 0.3, "rgb.i_auroc": 0.7},
        },
        "mean": {"i_auroc": 0.9, "p_auroc": 0.98, "aupro_30": 0.85, "aupro_01": 0.35, "rgb.i_auroc": 0.75},
    }
    step1 = {
        "step": 1,
        "classes": ["cookie"],
        "per_class": {
            "bagel": {"i_auroc": 0.9, "p_auroc": 0.98, "aupro_30": 0.88, "aupro_01": None, "rgb.i_auroc": 0.75},
            "carrot": {"i_auroc": 0.9, "p_auroc": 0.96, "aupro_30": 0.7, "aupro_01": 0.2, "rgb.i_auroc": 0.7},
            "cookie": {"i_auroc": 0.6, "p_auroc": 0.9, "aupro_30": 0.5, "aupro_01": 0.1, "rgb.i_auroc": 0.55},
        },
        "mean": {"i_auroc": 0.8, "p_auroc": 0.9467, "aupro_30": 0.6933, "aupro_01": 0.15, "rgb.i_auroc": 0.6667},
    }
    return {
        "classes": ["bagel", "carrot", "cookie"],
        "steps": [step0, step1],
        "R": {"i_auroc": [[0.95, 0.85, None], [0.9, 0.9, 0.6]]},
        "forgetting": {"i_auroc": 0.0, "aupro_30": 0.06, "aupro_01": None, "rgb.i_auroc": 0.025},
        "final": {"i_auroc": 0.8, "p_auroc": 0.9467, "aupro_30": 0.6933, "aupro_01": 0.15, "rgb.i_auroc": 0.6667},
    }


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("i_auroc", "I-AUROC"),
        ("aupro_30", "AUPRO@30%"),
        ("aupro_01", "AUPRO@1%"),
        ("depth.i_auroc", "I-AUROC (depth)"),
        ("rgb.aupro_30", "AUPRO@30% (rgb)"),
        ("f1_max", "f1_max"),
    ],
)
def test_metric_label(key, label):
    assert metric_label(key) == label


def test_markdown_tables():
    text = format_results_markdown(_results())
    assert text.endswith("\n")
    lines = text.splitlines()
    assert "| Step | New classes | Seen | I-AUROC | P-AUROC | AUPRO@30% | AUPRO@1% |" in lines
    assert "| 0 | bagel, carrot | 2 | 90.0 | 98.0 | 85.0 | 35.0 |" in lines
    assert "| 1 | cookie | 3 | 80.0 | 94.7 | 69.3 | 15.0 |" in lines
    assert "| Class | I-AUROC | P-AUROC | AUPRO@30% | AUPRO@1% | I-AUROC (rgb) |" in lines
    assert "| bagel | 90.0 | 98.0 | 88.0 | - | 75.0 |" in lines  # None shows as "-"
    assert "| **Mean** | 80.0 | 94.7 | 69.3 | 15.0 | 66.7 |" in lines
    assert "| FM | 0.0 | 6.0 | - | 2.5 |" in lines


def test_per_class_rows_follow_learned_order():
    results = _results()
    per_class = results["steps"][1]["per_class"]
    results["steps"][1]["per_class"] = {cls: per_class[cls] for cls in ["cookie", "carrot", "bagel"]}
    lines = format_results_markdown(results).splitlines()
    class_rows = [line.split(" | ")[0] for line in lines if line.startswith(("| bagel", "| carrot", "| cookie"))]
    assert class_rows == ["| bagel", "| carrot", "| cookie"]


@pytest.mark.parametrize("forgetting", [{}, {"i_auroc": None, "aupro_30": float("nan")}])
def test_single_step_has_no_forgetting(forgetting):
    results = _results()
    results["steps"] = results["steps"][:1]
    results["forgetting"] = forgetting
    text = format_results_markdown(results)
    assert "No forgetting measure (it needs at least two steps)." in text
    assert "| carrot | 85.0 | 97.0 | 80.0 | 30.0 | 70.0 |" in text
    assert "FM" not in format_final_table(results)


def test_final_table_for_console():
    lines = format_final_table(_results()).splitlines()
    assert lines[0] == "Results after step 1 (3 classes, %)"
    assert lines[1].split() == ["class", "I-AUROC", "P-AUROC", "AUPRO@30%", "AUPRO@1%", "I-AUROC", "(rgb)"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["cookie"] == ["60.0", "90.0", "50.0", "10.0", "55.0"]
    assert rows["mean"] == ["80.0", "94.7", "69.3", "15.0", "66.7"]
    assert rows["FM"] == ["0.0", "-", "6.0", "-", "2.5"]
    # right-aligned columns: every row ends at the same width
    assert len({len(line) for line in lines[1:]}) == 1


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r: r.pop("steps"), "results is missing the key 'steps'"),
        (lambda r: r.update(steps=[]), "at least one step"),
        (lambda r: r["steps"][1].pop("per_class"), r"results\['steps'\]\[1\] is missing the key 'per_class'"),
        (lambda r: r.update(final=[0.5]), r"expected results\['final'\] to be a dict, found list"),
        (lambda r: r["steps"][0]["per_class"].update(bagel=0.5), r"\['per_class'\]\['bagel'\] to be a dict"),
    ],
)
@pytest.mark.parametrize("formatter", [format_results_markdown, format_final_table])
def test_formatters_reject_malformed_results(mutate, match, formatter):
    results = copy.deepcopy(_results())
    mutate(results)
    with pytest.raises(ValueError, match=match):
        formatter(results)
