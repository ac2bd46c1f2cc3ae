"""Run a grid of variants × modalities on one setting and tabulate it (baselines and ablations).

``python tools/compare.py --setting experiments/Synthetic3D/6_1_with_4_step/config.yaml
--variants uniad,iuf,ib_iumad_wo_ib,ib_iumad_wo_mamba,ib_iumad --modalities rgb,depth,rgb+depth``

Each cell is an ordinary ``tools/train_val.py`` run (its own process) of the setting with the variant
file of ``experiments/_base_/variants/`` merged on top, in ``<output>/<variant>/<modality>/``.
Finished cells are skipped and killed ones resumed, so the command can simply be run again. With
``--seeds 133,134,135`` every cell runs once per seed (``<cell>/seed_<s>/``, ``--opts seed=<s>``) and the
table gives the mean ± the sample std over the seeds. With ``--regularizers iuf,none`` every cell runs once
per incremental strategy (``<cell>/<regularizer>/``, rows ``<variant> + <regularizer>``); the base step
does not depend on it, so it is trained once, with the first strategy, and copied into the others.
Beside the trained cells, the table has the training-free reference on the same features and data:
a patch memory bank per class (:mod:`engine.memory_bank` over every class of the setting, the
final step's classes), per modality and fused; I-AUROC only. Writes ``comparison.json``,
``comparison.md``, ``comparison.png`` (per-step curves) and ``memory_bank.json`` in ``<output>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from engine.run_folder import RunFolder  # noqa: E402
from utils.errors import ConfigError, IUMADError, report_error  # noqa: E402
from utils.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from utils.tables import comparison_markdown, seed_summary  # noqa: E402
from utils.vis import plot_step_curves  # noqa: E402

VARIANTS_DIR = REPO_ROOT / "experiments" / "_base_" / "variants"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", required=True, type=Path, help="experiments/<Dataset>/<setting>/config.yaml")
    parser.add_argument("--variants", default="uniad,iuf,ib_iumad_wo_ib,ib_iumad_wo_mamba,ib_iumad")
    parser.add_argument("--modalities", default="rgb+depth", help="comma list of rgb, depth, rgb+depth")
    parser.add_argument("--output", type=Path, default=None, help="default outputs/compare/<Dataset>/<setting>")
    parser.add_argument("--seeds", default=None, help="comma list of seeds: each cell once per seed, mean ± std")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every cell")
    parser.add_argument("--regularizers", default=None,
                        help="comma list of incremental.regularizer types; the base step is shared (list iuf first)")
    parser.add_argument("--no-reference", action="store_true", help="leave out the memory-bank rows")
    return parser.parse_args(argv)


def _cell_config(setting: Path, variant: str, folder: Path) -> Path:
    variant_file = VARIANTS_DIR / f"{variant}.yaml"
    if not variant_file.is_file():
        known = ", ".join(sorted(p.stem for p in VARIANTS_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown variant '{variant}' (no {variant_file}); variants: {known}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "variant_config.yaml"
    atomic_write_text(path, f"_base_: {json.dumps([str(setting.resolve()), str(variant_file)])}\n")
    return path


def _finished(folder: Path, num_steps: int | None) -> bool:
    results = folder / "results.json"
    if not results.is_file():
        return False
    steps = len(json.loads(results.read_text())["steps"])
    every_record = RunFolder(folder, steps).last_contiguous_step() == steps - 1
    return every_record and (num_steps is None or steps == num_steps)


def _check_same_opts(folder: Path, opts: list[str]) -> None:
    """A cell is reused or resumed only with the ``--opts`` it was started with."""
    record = folder / "opts.json"
    if record.is_file() and json.loads(record.read_text()) != opts:
        raise ConfigError(f"{folder} was run with --opts {json.loads(record.read_text())}; use another --output")
    atomic_write_json(record, opts)


def _copy_base_step(source: Path | None, folder: Path) -> None:
    """Start ``folder`` from the finished base step of ``source`` (same cell, another incremental strategy)."""
    target, shared = RunFolder(folder, 1), RunFolder(source, 1) if source is not None else None
    if shared is None or target.ckpt(0).is_file():
        return
    if not shared.finished(0):
        raise IUMADError(f"the shared base step {shared.step_dir(0)} is not finished")
    print(f"-- base step of {folder} copied from {source}", flush=True)
    shutil.copytree(shared.step_dir(0), target.step_dir(0))


def run_cell(setting: Path, variant: str, modality: str, folder: Path, opts: list[str],
             base_from: Path | None = None) -> dict:
    """Train/evaluate one cell (or reuse it) and return its ``results.json``; ``base_from``: its base step's cell."""
    from utils.config import load_config

    config = _cell_config(setting, variant, folder)
    _check_same_opts(folder, opts)
    _copy_base_step(base_from, folder)
    num_steps = len(load_config(config, opts)["incremental"]["steps"])
    if not _finished(folder, num_steps):
        modalities = "[" + ", ".join(modality.split("+")) + "]"
        command = [sys.executable, str(REPO_ROOT / "tools" / "train_val.py"), "--config", str(config),
                   "--output", str(folder), "--resume", "--opts", f"model.modalities={modalities}", *opts]
        print(f"== {variant} / {modality}: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            raise IUMADError(f"cell {variant} / {modality} failed; see {folder / 'train_val.log'}")
    return json.loads((folder / "results.json").read_text())


def run_seeds(setting: Path, variant: str, modality: str, folder: Path, opts: list[str],
              seeds: list[int] | None, base_from: Path | None = None) -> dict:
    """One cell's ``results.json`` (no ``seeds``), or the :func:`seed_summary` of one run per seed."""
    if seeds is None:
        return run_cell(setting, variant, modality, folder, opts, base_from)
    per_seed = {
        s: run_cell(setting, variant, modality, folder / f"seed_{s}", [*opts, f"seed={s}"],
                    base_from / f"seed_{s}" if base_from is not None else None)
        for s in seeds
    }
    return seed_summary(per_seed)


def memory_bank_reference(setting: Path, opts: list[str], record: Path) -> dict[str, float]:
    """Mean I-AUROC of the per-class patch memory bank over every class of the setting, by map.

    Kept in ``record`` (``memory_bank.json``) with the ``--opts`` it was measured with, and reused from there.
    """
    import torch

    from datasets import load_meta
    from engine.memory_bank import memory_bank_auroc
    from models.model_helper import build_model
    from utils.config import load_config

    saved = json.loads(record.read_text()) if record.is_file() else None
    if saved is not None and saved["opts"] == opts:
        return saved["i_auroc"]
    cfg = load_config(setting, opts)
    dcfg, root = cfg["dataset"], Path(cfg["dataset"]["root"])
    print(f"-- memory bank (kNN, no training) on {root}", flush=True)
    classes = [name for step in cfg["incremental"]["steps"] for name in step["classes"]]
    train, test = load_meta(root, dcfg["meta_dir"], classes, dcfg["layout"])
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["model"], dcfg["image_size"], 1).eval()
    reference = memory_bank_auroc(model, root, train, test, classes, dcfg["image_size"]).means()
    atomic_write_json(record, {"opts": opts, "i_auroc": reference})
    return reference


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds: expected a comma list of integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: repeated seed in {text!r}")
    return seeds


def _regularizers(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = text.split(",")
    if len(set(names)) != len(names):
        raise ConfigError(f"--regularizers: repeated name in {text!r}")
    if "iuf" in names and names[0] != "iuf":
        raise ConfigError("--regularizers: list iuf first: the shared base step is trained with the first, and only "
                          "iuf's base step also collects the bases its later steps need")
    return names


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    setting = args.setting.resolve()
    output = args.output or REPO_ROOT / "outputs" / "compare" / setting.parent.parent.name / setting.parent.name
    try:
        if not setting.is_file():
            raise ConfigError(f"setting config not found: {setting}")
        seeds, regularizers = _seeds(args.seeds), _regularizers(args.regularizers)
        table: dict[str, dict[str, dict]] = {}
        for variant in args.variants.split(","):
            for modality in args.modalities.split(","):
                if set(modality.split("+")) - {"rgb", "depth"}:
                    raise ConfigError(f"unknown modality '{modality}' (use rgb, depth or rgb+depth)")
                cell = output / variant / modality
                for regularizer in regularizers or [None]:
                    row, folder, opts, base = variant, cell, args.opts, None
                    if regularizer is not None:
                        row, folder = f"{variant} + {regularizer}", cell / regularizer
                        opts = [*args.opts, f"incremental.regularizer={{type: {regularizer}}}"]
                        base = cell / regularizers[0] if regularizer != regularizers[0] else None
                    table.setdefault(row, {})[modality] = run_seeds(setting, variant, modality, folder, opts, seeds,
                                                                    base)
        reference = None
        if not args.no_reference:
            reference = memory_bank_reference(setting, args.opts, output / "memory_bank.json")
        atomic_write_json(output / "comparison.json", table)
        markdown = comparison_markdown(table, str(args.setting), reference)
        atomic_write_text(output / "comparison.md", markdown)
        plot_step_curves(table, output / "comparison.png")
    except IUMADError as exc:
        return report_error(exc)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
