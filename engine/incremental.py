"""The incremental protocol: ``for step in steps: train(step); evaluate(all classes seen)``.

Step k starts from ``<output>/step_<k-1>/ckpt.pth`` (found by path convention), grows the object
classifiers to the classes seen so far, trains on step k's classes only, writes
``step_<k>/ckpt.pth`` and ``step_<k>/metrics.json``, and rebuilds ``results.json``/``results.md``.
"""

from __future__ import annotations

import logging
import math
import posixpath
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datasets import RGBDDataset, read_meta, write_meta
from engine.calibration import normal_map_statistics, normal_score_statistics
from engine.checkpoint import IncrementalState, architecture_fingerprint, load_checkpoint, save_checkpoint
from engine.evaluator import evaluate, score_dataset
from engine.feature_cache import build_feature_cache, cache_key
from engine.feature_statistics import fit_class_prototypes, fit_feature_standardizer
from engine.hooks import StepSpec
from engine.results import build_results, read_step_record, step_record, write_results
from engine.run_folder import RunFolder
from engine.strategies import Strategy, build_strategy
from engine.strategies.class_adapters import ClassAdapterIsolation
from engine.train_hooks import EpochLogger, ModelSelection, PeriodicCheckpoint, StepDrift
from engine.trainer import StepTrainer
from models.model_helper import build_model
from utils.criterion_helper import build_criterion
from utils.dist import barrier, broadcast_object, decided_on_main, get_world_size, is_main_process
from utils.errors import CheckpointError, ConfigError, DataError
from utils.fileio import atomic_write_json
from utils.seeding import derive_seed, seed_everything
from utils.tables import format_final_table

__all__ = ["RunOptions", "IncrementalRun"]

LOGGER = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Command-line choices of ``tools/train_val.py``."""

    only_step: int | None = None
    evaluate_only: bool = False
    resume: bool = False
    overwrite: bool = False


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


class IncrementalRun:
    """One setting (config + output folder) run step by step.

    Args:
        cfg: the resolved config (:func:`utils.config.load_config`).
        output: the run folder.
        device: this process's device.
        config_path: the config file, quoted in messages that tell the user what to run.
    """

    def __init__(self, cfg: dict, output: Path, device: torch.device, config_path: str) -> None:
        self.cfg = cfg
        self.output = Path(output)
        self.device = device
        self.config_path = config_path
        self.writer = None  # TensorBoard SummaryWriter, set by the entry point on rank 0
        self.steps: list[list[str]] = [list(s["classes"]) for s in cfg["incremental"]["steps"]]
        self.fingerprint = architecture_fingerprint(cfg)
        self.folder = RunFolder(self.output, len(self.steps))
        self.train_records: list[dict] = []
        self.test_records: list[dict] = []
        seed_everything(cfg["seed"])
        self.model = build_model(cfg["model"], cfg["dataset"]["image_size"], len(self.steps[0])).to(device)
        self.criterion = build_criterion(cfg["criterion"]["weights"])
        self.strategy: Strategy = build_strategy(cfg["incremental"]["regularizer"])
        self.state = IncrementalState()
        self.step_drift: dict[int, float | None] = {}  # step → how far its training moved the weights

    # ----------------------------------------------------------------- data
    def _load_meta(self) -> tuple[list[dict], list[dict]]:
        """Read (and build when missing) the meta files, checked; called on rank 0, which sends the records."""
        dcfg = self.cfg["dataset"]
        root = Path(dcfg["root"])
        meta_dir = Path(dcfg["meta_dir"] or root)
        if not (meta_dir / "train.jsonl").is_file() or not (meta_dir / "test.jsonl").is_file():
            LOGGER.info("building meta files in %s", meta_dir)
            write_meta(root, meta_dir)
        train, test = read_meta(meta_dir / "train.jsonl"), read_meta(meta_dir / "test.jsonl")
        _check_split(train, test, meta_dir)
        known = sorted({r["clsname"] for r in train})
        for name in (c for step in self.steps for c in step):
            for records, split in ((train, "train"), (test, "test")):
                if not any(r["clsname"] == name for r in records):
                    raise DataError(
                        f"class '{name}' of incremental.steps has no {split} samples in {meta_dir / (split + '.jsonl')}"
                        f"; classes there: {', '.join(known)}"
                    )
        return train, test

    def _dataset(self, records: list[dict], class_ids: dict[str, int]) -> RGBDDataset:
        backbone = self.model.backbone
        return RGBDDataset(
            self.cfg["dataset"]["root"],
            records,
            class_ids,
            self.cfg["dataset"]["image_size"],
            mean=backbone.input_mean,
            std=backbone.input_std,
        )

    def _split_train_val(self, records: list[dict], classes: list[str], step: int) -> tuple[list[dict], list[dict]]:
        """Held-out training normals per class (``trainer.val_fraction``; they never train, and never are test images).

        They calibrate the decision thresholds (:mod:`engine.calibration`) and, with ``trainer.select: val``,
        choose the epoch. A class with a single training image keeps it for training.
        """
        rng = random.Random(derive_seed(self.cfg["seed"], "split", step))
        train, val = [], []
        for name in classes:
            own = [r for r in records if r["clsname"] == name]
            rng.shuffle(own)
            fraction = self.cfg["trainer"]["val_fraction"]
            n_val = max(1, round(len(own) * fraction)) if len(own) > 1 and fraction > 0 else 0
            val.extend(own[:n_val])
            train.extend(own[n_val:])
        return train, val

    # ---------------------------------------------------------- checkpoints
    def _payload(self, step: int) -> dict[str, Any]:
        state = IncrementalState(self.state.classes, self.strategy.carried_state(), self.state.normal_scores)
        return {"fingerprint": self.fingerprint, "step": step, "state": state.to_dict(), "config": self.cfg,
                "drift": self.step_drift.get(step)}

    def _load_step(self, step: int) -> None:
        hint = (
            f"Run step {step} first: python tools/train_val.py --config {self.config_path} --step {step} "
            f"--output {self.output}"
        )
        payload = decided_on_main(lambda: load_checkpoint(self.folder.ckpt(step), self.fingerprint, hint))
        expected = [c for classes in self.steps[: step + 1] for c in classes]
        if payload["state"]["classes"] != expected:
            raise CheckpointError(
                f"{self.folder.ckpt(step)} learned classes {payload['state']['classes']}, but steps 0..{step} of "
                f"this config have {expected}; use the config it was trained with or another --output"
            )
        self.state = IncrementalState.from_dict(payload["state"])
        self.model.grow_classes(len(self.state.classes))
        self.model.load_state_dict(payload["model"])
        self.strategy.load_carried_state(self.state.regularizer)
        self.step_drift[step] = payload.get("drift")
        LOGGER.info("loaded %s (classes: %s)", self.folder.ckpt(step), ", ".join(self.state.classes))

    # ------------------------------------------------------------- running
    def _steps_to_run(self, options: RunOptions) -> list[int]:
        if options.only_step is not None and not 0 <= options.only_step < len(self.steps):
            raise ConfigError(f"--step {options.only_step}: this setting has steps 0..{len(self.steps) - 1}")
        return [options.only_step] if options.only_step is not None else list(range(len(self.steps)))

    def prepare(self, options: RunOptions) -> None:
        """Check the output folder before anything is written, then read the meta files (built when missing).

        A finished run is not trained over unless asked. With ``--overwrite`` the folders of the steps to run
        *and of every later step* are removed, so results of an old run never mix with the new one. The run
        folder and the meta files are read on rank 0 only, which tells the other ranks what it found: a node
        without a shared file system never reads its own (empty) folder.
        """
        if not options.evaluate_only:
            if options.resume and options.overwrite:
                raise ConfigError("--resume and --overwrite contradict each other; pass one")
            batch, world = self.cfg["dataset"]["batch_size"], get_world_size()
            if batch % world:
                raise ConfigError(
                    f"dataset.batch_size={batch} is the global batch and must be a multiple of the {world} processes"
                )
            steps = self._steps_to_run(options)
            if options.overwrite:
                self.folder.clear_from(steps[0])
            elif options.resume:
                decided_on_main(lambda: self.folder.check_resumed_config(self.cfg))
            else:
                decided_on_main(lambda: self.folder.refuse_finished(steps))
        root = Path(self.cfg["dataset"]["root"])
        if not root.is_dir():  # every node reads the images
            raise DataError(f"dataset root not found: {root} (dataset.root in the config)")
        self.train_records, self.test_records = decided_on_main(self._load_meta)

    def run(self, options: RunOptions) -> dict[str, Any]:
        """Train (and evaluate) the steps asked for; return the results dict. Call :meth:`prepare` first."""
        if options.evaluate_only:
            return self.evaluate_checkpoint(options.only_step)
        steps = self._steps_to_run(options)
        if steps[0] > 0:
            self._load_step(steps[0] - 1)
        finished = decided_on_main(lambda: [self.folder.finished(k) for k in range(len(self.steps))])
        for step in steps:
            if options.resume and finished[step]:
                LOGGER.info("step %d already finished: skipping (--resume)", step)
                self._load_step(step)
                continue
            self._run_step(step, resume=options.resume)
        return self._write_results(max(decided_on_main(self.folder.last_contiguous_step), steps[-1]))

    def _run_step(self, step: int, resume: bool) -> None:
        step_dir = self.folder.step_dir(step)
        new = self.steps[step]
        if step > 0:
            LOGGER.info("step %d starts from %s", step, self.folder.ckpt(step - 1))
        self.state.classes = [c for c in self.state.classes if c not in new] + new
        seed_everything(derive_seed(self.cfg["seed"], "step", step))  # new class-head rows: same however started
        self.model.grow_classes(len(self.state.classes))
        if not resume or not decided_on_main(self.folder.ckpt(step).is_file):
            self._train(step, step_dir, resume)
        else:
            self._load_step(step)
        self._evaluate_step(step, step_dir)

    def _train(self, step: int, step_dir: Path, resume: bool) -> None:
        tcfg = self.cfg["trainer"]
        class_ids = {c: self.state.classes.index(c) for c in self.steps[step]}
        records = [r for r in self.train_records if r["clsname"] in class_ids]
        records, val_records = self._split_train_val(records, self.steps[step], step)
        held_out_ids = {r["clsname"]: class_ids[r["clsname"]] for r in val_records}
        held_out = self._dataset(val_records, held_out_ids) if val_records else None
        raw_train = self._dataset(records, class_ids)
        train_set, uses_cache = self._maybe_cache(raw_train)
        val_set = None
        if tcfg["select"] == "val" and held_out is not None:
            val_set = self._maybe_cache(held_out)[0] if uses_cache else held_out
        batch = self.cfg["dataset"]["eval_batch_size"]
        fit_feature_standardizer(self.model, train_set, self.device, batch, uses_cache)
        fit_class_prototypes(self.model, train_set, self.device, batch, uses_cache, sorted(class_ids.values()))
        last = step_dir / "last.pth"
        resume_payload = decided_on_main(lambda: load_checkpoint(last, self.fingerprint) if resume and last.is_file()
                                         else None)
        if resume_payload is not None and resume_payload["state"]["classes"] != self.state.classes:
            raise CheckpointError(
                f"{last} was training classes {resume_payload['state']['classes']}, but step {step} of this config "
                f"gives {self.state.classes}; use the config it was started with, or --overwrite"
            )
        spec = StepSpec(step, self._epochs(step), train_set, val_set, uses_cache, step_dir, sorted(class_ids.values()))
        LOGGER.info("step %d: training on %s (%d images, %d epochs)", step, ", ".join(self.steps[step]),
                    len(raw_train), spec.epochs)
        trainer = StepTrainer(self.model, self.criterion, spec, self.cfg, self.device, self._hooks(step), self.writer)
        if resume_payload is not None:
            trainer.restore(resume_payload)
        trainer.run()
        self.step_drift[step] = self.drift.drift
        LOGGER.info("step %d: drift %.4f (L2 distance of the trained parameters from the step's start)", step,
                    self.drift.drift)
        self._calibrate(step, held_out)
        if is_main_process():
            save_checkpoint(self.folder.ckpt(step), {**self._payload(step), "model": self.model.state_dict()})
            last.unlink(missing_ok=True)
        barrier()

    def _epochs(self, step: int) -> int:
        """The step entry's ``epochs``, else ``trainer.epochs`` (base step) or ``trainer.incremental_epochs``.

        ``trainer.max_epochs_per_step`` caps the result (quick runs of the long real-data schedules).
        """
        tcfg = self.cfg["trainer"]
        default = tcfg["epochs"] if step == 0 else tcfg["incremental_epochs"]
        epochs = self.cfg["incremental"]["steps"][step].get("epochs", default)
        return min(epochs, tcfg["max_epochs_per_step"] or epochs)

    def _hooks(self, step: int) -> list:
        """The step trainer's hooks, in the order they run: parameters are frozen before anything snapshots them."""
        hooks = [ClassAdapterIsolation()] if self.model.router is not None else []
        self.drift = StepDrift()
        hooks += [self.strategy, self.drift, EpochLogger()]
        if self.cfg["trainer"]["select"] == "val":
            hooks.append(ModelSelection(self.criterion))
        hooks.append(PeriodicCheckpoint(hooks, lambda: self._payload(step)))
        return hooks

    def _calibrate(self, step: int, held_out: RGBDDataset | None) -> None:
        """Fit the map fusion's statistics (with ``normal_zmax``), then store the held-out normals' image scores."""
        if held_out is None:  # no class of the step kept a training normal back
            if self.model.map_fusion is not None:
                self._fit_map_fusion(step, {})
            return
        batch = self.cfg["dataset"]["eval_batch_size"]
        precision = self.cfg["trainer"]["precision"]
        workers = self.cfg["dataset"]["workers"]
        records = score_dataset(self.model, held_out, self.device, batch, precision, workers)  # on rank 0 only
        if self.model.map_fusion is not None:
            self._fit_map_fusion(step, broadcast_object(normal_map_statistics(records)))
            records = score_dataset(self.model, held_out, self.device, batch, precision, workers)  # fitted fusion
        self.state.normal_scores.update(broadcast_object(normal_score_statistics(records)))
        LOGGER.info("step %d: thresholds calibrated on %d held-out training normals", step, len(records))

    def _fit_map_fusion(self, step: int, fitted: dict[str, dict[str, tuple[float, float]]]) -> None:
        """Set each new class's map statistics; a class without usable ones falls back to the pooled statistics."""
        for name in self.steps[step]:
            statistics = fitted.get(name)
            usable = statistics is not None and all(
                math.isfinite(mean) and math.isfinite(std) and std > 0 for mean, std in statistics.values()
            )
            if usable:
                self.model.map_fusion.set_statistics(self.state.classes.index(name), statistics)
            else:
                LOGGER.warning(
                    "step %d: class %s has no usable held-out normal maps (%s); its fused map uses the statistics "
                    "pooled over the other classes", step, name,
                    "none held out" if statistics is None else f"mean, std {statistics}",
                )

    def _maybe_cache(self, dataset: RGBDDataset):
        tcfg, dcfg = self.cfg["trainer"], self.cfg["dataset"]
        if tcfg["feature_cache"] == "off":
            return dataset, False
        backbone = next(e for e in self.cfg["model"]["net"] if e.get("name") == "backbone")

        xyz_of = {r["filename"]: r["xyzname"] for r in dataset.records}

        def key(filename: str, class_id: int) -> str:
            files = [Path(dcfg["root"]) / filename, Path(dcfg["root"]) / xyz_of[filename]]
            return cache_key(dcfg["root"], filename, class_id, backbone, dcfg["image_size"],
                             self.cfg["model"]["modalities"], files)

        cached = build_feature_cache(
            self.model, dataset, self.device, dcfg["eval_batch_size"], dcfg["workers"], tcfg["feature_cache"],
            tcfg["feature_cache_max_gb"], self.output / "feature_cache", key, is_main_process(),
        )
        return cached, True

    def _evaluate_seen(self, vis_dir: Path | None) -> dict[str, dict[str, float]]:
        """Per-class metrics on the test images of every class seen so far."""
        ecfg = self.cfg["evaluation"]
        class_ids = {c: i for i, c in enumerate(self.state.classes)}
        test_set = self._dataset([r for r in self.test_records if r["clsname"] in class_ids], class_ids)
        return evaluate(self.model, test_set, self.device, self.cfg["dataset"]["eval_batch_size"],
                        ecfg["aupro_mode"], vis_dir, ecfg["vis_per_class"] if vis_dir else 0,
                        self.cfg["trainer"]["precision"], self.cfg["dataset"]["workers"])

    def _evaluate_step(self, step: int, step_dir: Path) -> None:
        record = step_record(step, self.steps[step], self._evaluate_seen(step_dir / "vis"), self.step_drift.get(step))
        if is_main_process():
            atomic_write_json(step_dir / "metrics.json", record)
            if self.writer is not None:
                for key, value in record["mean"].items():
                    self.writer.add_scalar(f"metrics/{key}", value, step)
        barrier()
        self._write_results(step, log_table=False)

    def _write_results(self, last_step: int, log_table: bool = True) -> dict[str, Any]:
        """Rebuild results.json/md from the step records 0..last_step (after every step and at the end)."""
        results = decided_on_main(
            lambda: build_results([read_step_record(self.folder.metrics(k)) for k in range(last_step + 1)])
        )
        if is_main_process():
            write_results(self.output, results)
            if log_table:
                LOGGER.info("final table (step %d):\n%s", last_step, format_final_table(results))
        return results

    def evaluate_checkpoint(self, step: int | None) -> dict[str, Any]:
        """``--evaluate``: re-evaluate a finished step's checkpoint on every class it has seen."""
        if step is None:
            finished = decided_on_main(lambda: [k for k in range(len(self.steps)) if self.folder.ckpt(k).is_file()])
            if not finished:
                raise ConfigError(f"--evaluate: no finished step in {self.output}; train first")
            step = finished[-1]
        self._load_step(step)
        per_class = self._evaluate_seen(None)
        record = step_record(step, self.steps[step], per_class, self.step_drift.get(step))
        if is_main_process():
            atomic_write_json(self.folder.step_dir(step) / "metrics_evaluate.json", record)
            LOGGER.info("evaluation of step %d:\n%s", step, format_final_table(build_results([record])))
        return record
