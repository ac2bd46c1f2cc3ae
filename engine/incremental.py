"""The incremental protocol: ``for step in steps: train(step); evaluate(all classes seen)``.

Step k starts from ``<output>/step_<k-1>/ckpt.pth`` (found by path convention), grows the object
classifiers to the classes seen so far, trains on step k's classes only, writes
``step_<k>/ckpt.pth`` and ``step_<k>/metrics.json``, and rebuilds ``results.json``/``results.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.calibration import calibrate_step
from engine.checkpoint import IncrementalState
from engine.evaluator import evaluate
from engine.feature_statistics import fit_class_prototypes, fit_feature_standardizer
from engine.hooks import StepSpec
from engine.results import build_results, read_step_record, step_record, write_results
from engine.run_data import RunData
from engine.run_folder import RunFolder
from engine.step_checkpoints import StepCheckpoints
from engine.strategies import Strategy, build_strategy
from engine.strategies.class_adapters import ClassAdapterIsolation
from engine.train_hooks import EpochLogger, ModelSelection, PeriodicCheckpoint, StepDrift
from engine.trainer import StepTrainer
from models.model_helper import build_model
from utils.criterion_helper import build_criterion
from utils.dist import barrier, decided_on_main, get_world_size, is_main_process
from utils.errors import ConfigError
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
        self.writer = None  # TensorBoard SummaryWriter, set by the entry point on rank 0
        self.steps: list[list[str]] = [list(s["classes"]) for s in cfg["incremental"]["steps"]]
        self.folder = RunFolder(self.output, len(self.steps))
        self.checkpoints = StepCheckpoints(self.folder, cfg, config_path)
        seed_everything(cfg["seed"])
        self.model = build_model(cfg["model"], cfg["dataset"]["image_size"], len(self.steps[0])).to(device)
        self.data = RunData(cfg, self.model, self.output / "feature_cache", device)
        self.criterion = build_criterion(cfg["criterion"]["weights"])
        self.strategy: Strategy = build_strategy(cfg["incremental"]["regularizer"])
        self.state = IncrementalState()
        self.step_drift: dict[int, float | None] = {}  # step → how far its training moved the weights

    # ---------------------------------------------------------- checkpoints
    def _payload(self, step: int) -> dict[str, Any]:
        state = IncrementalState(self.state.classes, self.strategy.carried_state(), self.state.normal_scores)
        return self.checkpoints.payload(step, state, self.step_drift.get(step))

    def _load_step(self, step: int) -> None:
        """Continue from finished step ``step``: its classes, weights and the strategy's carried state."""
        payload = self.checkpoints.load_finished(step)
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
        self.data.load([name for step in self.steps for name in step])

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
        class_ids = {c: self.state.classes.index(c) for c in self.steps[step]}
        sets = self.data.step_sets(step, class_ids)
        batch = self.cfg["dataset"]["eval_batch_size"]
        fit_feature_standardizer(self.model, sets.train, self.device, batch, sets.uses_cache)
        fit_class_prototypes(self.model, sets.train, self.device, batch, sets.uses_cache, sorted(class_ids.values()))
        resume_payload = self.checkpoints.load_interrupted(step, self.state.classes) if resume else None
        spec = StepSpec(step, self._epochs(step), sets.train, sets.val, sets.uses_cache, step_dir,
                        sorted(class_ids.values()))
        LOGGER.info("step %d: training on %s (%d images, %d epochs)", step, ", ".join(self.steps[step]),
                    sets.images, spec.epochs)
        trainer = StepTrainer(self.model, self.criterion, spec, self.cfg, self.device, self._hooks(step), self.writer)
        if resume_payload is not None:
            trainer.restore(resume_payload)
        trainer.run()
        self.step_drift[step] = self.drift.drift
        LOGGER.info("step %d: drift %.4f (L2 distance of the trained parameters from the step's start)", step,
                    self.drift.drift)
        scores = calibrate_step(self.model, sets.scored_train, sets.held_out, self.steps[step], self.state.classes,
                                step, self.cfg, self.device)
        self.state.normal_scores.update(scores)
        self.checkpoints.save_finished(step, {**self._payload(step), "model": self.model.state_dict()})

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
        hooks.append(PeriodicCheckpoint(self.checkpoints.last(step), hooks, lambda: self._payload(step)))
        return hooks

    def _evaluate_seen(self, vis_dir: Path | None) -> dict[str, dict[str, float]]:
        """Per-class metrics on the test images of every class seen so far."""
        ecfg = self.cfg["evaluation"]
        test_set = self.data.test_set({c: i for i, c in enumerate(self.state.classes)})
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
            finished = decided_on_main(self.folder.checkpointed_steps)
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
