"""A run's step checkpoints, checked against its config: ``step_<k>/ckpt.pth`` and ``step_<k>/last.pth``.

``ckpt.pth`` is a finished step (the next step starts from it); ``last.pth`` is the latest epoch of a step
still training (``--resume`` continues it) and is removed when the step finishes. Loads happen on rank 0,
which hands the payload to the other ranks (a node without the run folder never reads its own disk);
writes happen on rank 0 only. Every load checks the architecture fingerprint and the classes learned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.checkpoint import IncrementalState, architecture_fingerprint, load_checkpoint, save_checkpoint
from engine.run_folder import RunFolder
from utils.dist import barrier, decided_on_main, is_main_process
from utils.errors import CheckpointError

__all__ = ["StepCheckpoints"]


class StepCheckpoints:
    """Reads and writes the checkpoints of one run folder for one config.

    Args:
        folder: the run folder.
        cfg: the resolved config (its model section gives the fingerprint, its steps the classes).
        config_path: the config file, quoted in the command a "not found" message suggests.
    """

    def __init__(self, folder: RunFolder, cfg: dict, config_path: str) -> None:
        self.folder = folder
        self.cfg = cfg
        self.fingerprint = architecture_fingerprint(cfg)
        self.steps: list[list[str]] = [list(s["classes"]) for s in cfg["incremental"]["steps"]]
        self.config_path = config_path

    def payload(self, step: int, state: IncrementalState, drift: float | None) -> dict[str, Any]:
        """Everything a checkpoint of ``step`` holds besides the weights (and the trainer's own state)."""
        return {"fingerprint": self.fingerprint, "step": step, "state": state.to_dict(), "config": self.cfg,
                "drift": drift}

    def load_finished(self, step: int) -> dict[str, Any]:
        """The payload of finished step ``step``, whose classes must be those of steps 0..step of the config.

        Raises:
            CheckpointError: missing (naming the command that writes it), foreign, or of other classes.
        """
        path = self.folder.ckpt(step)
        hint = (f"Run step {step} first: python tools/train_val.py --config {self.config_path} --step {step} "
                f"--output {self.folder.output}")
        payload = decided_on_main(lambda: load_checkpoint(path, self.fingerprint, hint))
        expected = [c for classes in self.steps[: step + 1] for c in classes]
        if payload["state"]["classes"] != expected:
            raise CheckpointError(
                f"{path} learned classes {payload['state']['classes']}, but steps 0..{step} of this config have "
                f"{expected}; use the config it was trained with or another --output"
            )
        return payload

    def load_interrupted(self, step: int, classes: list[str]) -> dict[str, Any] | None:
        """The payload of ``step``'s ``last.pth`` (``None`` when there is none), which must be training ``classes``.

        Raises:
            CheckpointError: foreign, or training other classes.
        """
        last = self.last(step)
        payload = decided_on_main(lambda: load_checkpoint(last, self.fingerprint) if last.is_file() else None)
        if payload is not None and payload["state"]["classes"] != classes:
            raise CheckpointError(
                f"{last} was training classes {payload['state']['classes']}, but step {step} of this config "
                f"gives {classes}; use the config it was started with, or --overwrite"
            )
        return payload

    def save_finished(self, step: int, payload: dict[str, Any]) -> None:
        """Write ``ckpt.pth`` of ``step`` (atomically, rank 0) and drop its ``last.pth``; all ranks wait for it."""
        if is_main_process():
            save_checkpoint(self.folder.ckpt(step), payload)
            self.last(step).unlink(missing_ok=True)
        barrier()

    def last(self, step: int) -> Path:
        """``step_<k>/last.pth``."""
        return self.folder.step_dir(step) / "last.pth"
