"""Checkpoints: atomic writes, validated loads, and the state carried from step to step.

A step directory ``<output>/step_<k>/`` holds ``ckpt.pth`` (the finished step) and, while a step
trains with ``trainer.save_every_epochs``, ``last.pth`` (the latest epoch, for ``--resume``).
Both are written to a temporary file in the same folder and renamed over the old one, so a kill or
a full disk at any moment leaves the previous good file in place.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.errors import CheckpointError
from utils.fileio import atomic_write_bytes

__all__ = [
    "CHECKPOINT_VERSION",
    "IncrementalState",
    "architecture_fingerprint",
    "save_checkpoint",
    "load_checkpoint",
]

CHECKPOINT_VERSION = 2
#: The last commit whose code reads checkpoints of version 1.
_VERSION_1_COMMIT = "8eb4294"


@dataclass
class IncrementalState:
    """What an incremental run carries from one step to the next (saved in every checkpoint).

    Attributes:
        classes: every class learned so far, in classifier order.
        regularizer: the incremental strategy's carried state (e.g. ``iuf``'s activation bases per layer).
        normal_scores: class → statistics of its held-out training normals' image scores, taken at the
            end of the step that learned it (:mod:`engine.calibration`; empty in checkpoints written
            before thresholds existed, or with ``trainer.val_fraction: 0``).
    """

    classes: list[str] = field(default_factory=list)
    regularizer: dict[str, Any] = field(default_factory=dict)
    normal_scores: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for ``torch.save``."""
        return {"classes": list(self.classes), "regularizer": self.regularizer, "normal_scores": self.normal_scores}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncrementalState:
        """Inverse of :meth:`to_dict`."""
        return cls(
            classes=list(data["classes"]),
            regularizer=dict(data.get("regularizer", {})),
            normal_scores=dict(data.get("normal_scores", {})),
        )


_NOT_ARCHITECTURE = {"pretrained", "checkpoint_path", "dropout"}  # where weights come from; training-only


def architecture_fingerprint(cfg: dict) -> str:
    """Hash of everything that shapes the network's parameters (model section and input size).

    Leaves out the feature jitter and the keys of :data:`_NOT_ARCHITECTURE`, so a checkpoint trained with
    ``pretrained: true`` can be evaluated offline with ``checkpoint_path`` or ``pretrained: false``. Keeps
    ``model.score_region: object``, since the checkpoint's map statistics and thresholds were fitted on that
    region; the default ``image`` is left out, so checkpoints from before the switch keep their fingerprint.
    """
    net = [
        {**entry, "kwargs": {k: v for k, v in entry.get("kwargs", {}).items() if k not in _NOT_ARCHITECTURE}}
        for entry in cfg["model"]["net"]
    ]
    model_cfg = {k: v for k, v in cfg["model"].items() if k != "jitter" and (k, v) != ("score_region", "image")}
    model_cfg["net"] = net
    key = json.dumps({"model": model_cfg, "image_size": cfg["dataset"]["image_size"]}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    Raises:
        CheckpointError: when the folder is not writable or the disk is full; the previous file at
            ``path`` (if any) is left untouched.
    """
    buffer = io.BytesIO()
    torch.save({"version": CHECKPOINT_VERSION, **payload}, buffer)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}; the previous file is kept") from None


def _blocked_global(exc: Exception) -> str | None:
    """The line of torch's weights-only refusal that names the blocked class or function, or None if none does."""
    lines = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
    return lines[0].rstrip(".") if lines else None


def load_checkpoint(path: Path, fingerprint: str | None = None, hint: str = "") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` onto the CPU and check where it came from.

    Only tensors and plain containers are unpickled (``weights_only=True``): a checkpoint is a pickle,
    and a shared file that asks for anything else (which could run code) is refused, not loaded.

    Args:
        path: the ``.pth`` file.
        fingerprint: :func:`architecture_fingerprint` of the current config; a checkpoint of another
            architecture is refused instead of being loaded with dropped keys.
        hint: appended to the "not found" message (e.g. the command that writes the file).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}" + (f". {hint}" if hint else ""))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = _blocked_global(exc)
        if blocked is None:  # not a pickle at all, or a truncated one
            raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
        raise CheckpointError(
            f"refusing checkpoint {path}: it holds objects other than tensors and plain containers, which "
            f"could run code when loaded ({blocked}); only load checkpoints written by this project"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any other unpickling failure means the same thing to the user
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(payload, dict) or "version" not in payload:
        raise CheckpointError(f"{path} is not an IB-IUMAD checkpoint")
    if payload["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} was written by an older version of this repository (checkpoint version {payload['version']}, "
            f"this code reads {CHECKPOINT_VERSION}); retrain, or check out commit {_VERSION_1_COMMIT} to use it"
        )
    if fingerprint is not None and payload.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{path} was written by another model configuration (fingerprint {payload.get('fingerprint')}, "
            f"this config {fingerprint}); use the config it was trained with or another --output"
        )
    return payload
