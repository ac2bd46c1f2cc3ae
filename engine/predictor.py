"""A trained run applied to new scans: load a finished step, score inputs, decide per input.

The run folder's ``config.yaml`` rebuilds the network; the step's ``ckpt.pth`` is checked against it
(:func:`engine.checkpoint.load_checkpoint`, weights only) and gives the weights, the classes and the
held-out normal scores of every class (:mod:`engine.calibration`). The backbone is built without
pretrained weights: the checkpoint holds them, so no hub and no weight package is needed.

No class label is needed: the predicted class is the prototype router's with class adapters (the
class whose adapters scored the input), else the object classifier's (the conditioners' heads,
softmax averaged over the modalities; IB fusion's teacher head without a conditioner); it picks the
threshold of that class (:class:`DecisionRule`: conformal thresholds of :mod:`engine.calibration`, pooled over
the classes when the fused map is standardised per class, each with the false-alarm rate it keeps).

With clouds on, every input with a point cloud keeps it for its PLY (:mod:`utils.anomaly_cloud`), coloured by the
same full-resolution map and colour scale as its overlay; a model without depth that scores whole images reads
the cloud only for that, so a broken cloud then costs the input its PLY (with a warning), never its prediction.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from datasets.io import read_xyz
from datasets.rgbd_dataset import model_inputs, read_rgbd_pair
from datasets.scan_folder import ScanInput
from engine.batch import autocast
from engine.calibration import DEFAULT_QUANTILE, DecisionThreshold, decision_thresholds
from engine.checkpoint import architecture_fingerprint, load_checkpoint
from engine.prediction_report import PredictionReport
from engine.run_folder import RunFolder
from models.classifier import GrowingClassifier
from models.ib_iumad import IBIUMAD
from models.model_helper import build_model
from utils.config import load_config
from utils.errors import CheckpointError, ConfigError, DataError
from utils.vis import prediction_overlay

__all__ = [
    "TrainedRun", "LoadedScan", "DecisionRule", "load_trained_run", "decision_rule", "load_scan", "score_batch",
    "predict_scans", "stack_inputs",
]

LOGGER = logging.getLogger(__name__)


@dataclass
class TrainedRun:
    """A finished step of a run, ready to predict.

    Attributes:
        model: the network in eval mode on its device.
        cfg: the run's resolved config.
        step: the step loaded.
        classes: class names in classifier order.
        normal_scores: class → held-out normal score statistics (empty for checkpoints written before them).
        checkpoint: the loaded file.
    """

    model: IBIUMAD
    cfg: dict
    step: int
    classes: list[str]
    normal_scores: dict[str, dict[str, Any]]
    checkpoint: Path

    @property
    def uses_depth(self) -> bool:
        """Whether the model has the depth modality."""
        return "depth" in self.model.modalities

    @property
    def reads_cloud(self) -> bool:
        """Whether an input's point cloud is needed: for the depth image or the object footprint."""
        return self.uses_depth or self.model.score_region == "object"


def _offline_model_cfg(model_cfg: dict) -> dict:
    """The model section with the backbone built from scratch (its weights come from the checkpoint)."""
    model_cfg = copy.deepcopy(model_cfg)
    for entry in model_cfg["net"]:
        if entry.get("name") == "backbone":
            kwargs = entry.setdefault("kwargs", {})
            kwargs["pretrained"] = False
            kwargs.pop("checkpoint_path", None)
    return model_cfg


def _step_to_load(folder: RunFolder, step: int | None) -> int:
    finished = folder.checkpointed_steps()
    if step is None:
        if not finished:
            raise CheckpointError(f"{folder.output} holds no finished step (no step_K/ckpt.pth); train it first")
        return finished[-1]
    if step not in finished:
        raise CheckpointError(
            f"--step {step}: {folder.ckpt(step)} does not exist (finished steps: {finished or 'none'})"
        )
    return step


def load_trained_run(run_dir: str | Path, step: int | None, device: torch.device) -> TrainedRun:
    """Rebuild the model of ``run_dir`` and load its step ``step`` (default: the last finished step).

    Raises:
        ConfigError: the folder or its ``config.yaml`` is missing or invalid.
        CheckpointError: no finished step, or a checkpoint that does not belong to the config.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise ConfigError(f"run folder not found: {run_dir}")
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder of tools/train_val.py (it has no config.yaml)")
    cfg = load_config(config_path)
    folder = RunFolder(run_dir, len(cfg["incremental"]["steps"]))
    step = _step_to_load(folder, step)
    checkpoint = folder.ckpt(step)
    payload = load_checkpoint(checkpoint, architecture_fingerprint(cfg))
    state = payload["state"]
    base_classes = len(cfg["incremental"]["steps"][0]["classes"])
    model = build_model(_offline_model_cfg(cfg["model"]), cfg["dataset"]["image_size"], base_classes)
    model.grow_classes(len(state["classes"]))
    model.load_state_dict(payload["model"])
    return TrainedRun(
        model.to(device).eval(), cfg, step, list(state["classes"]), dict(state.get("normal_scores", {})), checkpoint
    )


def _class_probabilities(outputs: dict[str, torch.Tensor], modalities: list[str]) -> torch.Tensor | None:
    """``(B, K)`` class probabilities of the model's class heads, or None when it has none."""
    heads = [outputs[f"logits_{m}"] for m in modalities if f"logits_{m}" in outputs]
    if not heads:  # the fusion module's class heads (IB fusion's teacher)
        heads = list(outputs.get("class_logits", {}).values())
    if not heads:
        return None
    return torch.stack([h.float().softmax(dim=1) for h in heads]).mean(dim=0)


@torch.no_grad()
def score_batch(run: TrainedRun, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Score one batch.

    Args:
        run: the loaded run.
        inputs: modality → ``(B, 3, S, S)`` normalised images of the model's modalities.

    Returns:
        ``"map"`` ``(B, S, S)`` float32 fused anomaly maps, ``"score"`` ``(B,)`` image scores, ``"score_<m>"``
        per modality, and ``"class_index"`` ``(B,)``: the router's class with class adapters, else (with a class
        head) the most probable class, with its ``"class_probability"`` ``(B,)``.
    """
    device = next(run.model.parameters()).device
    with autocast(device, run.cfg["trainer"]["precision"]):
        outputs = run.model({m: x.to(device) for m, x in inputs.items()})
    scores = {
        "map": outputs["anomaly_map"][:, 0].float().cpu().numpy(),
        "score": outputs["image_score"].float().cpu().numpy(),
    }
    for modality in run.model.modalities:
        if f"image_score_{modality}" in outputs:
            scores[f"score_{modality}"] = outputs[f"image_score_{modality}"].float().cpu().numpy()
    probabilities = None if "route" in outputs else _class_probabilities(outputs, run.model.modalities)
    if "route" in outputs:  # class adapters: the class whose adapters scored the input (no probability)
        scores["class_index"] = outputs["route"].cpu().numpy()
    elif probabilities is not None:
        best = probabilities.max(dim=1)
        scores["class_index"] = best.indices.cpu().numpy()
        scores["class_probability"] = best.values.cpu().numpy()
    return scores


@dataclass(frozen=True)
class DecisionRule:
    """How inputs are decided: each class's threshold from held-out normals, or one ``--threshold`` for all.

    Attributes:
        thresholds: class → :class:`engine.calibration.DecisionThreshold` (empty with ``fixed``).
        fixed: ``--threshold``, or ``None``.
        quantile: ``1 −`` the asked false-alarm rate.
    """

    thresholds: dict[str, DecisionThreshold]
    fixed: float | None = None
    quantile: float = DEFAULT_QUANTILE

    def decide(self, clsname: str | None, score: float) -> tuple[float, float | None, str]:
        """``(threshold, the false-alarm rate it keeps or None, "anomalous" | "normal")`` of one input."""
        if self.fixed is not None:
            return self.fixed, None, "anomalous" if score > self.fixed else "normal"
        if clsname not in self.thresholds:
            raise CheckpointError(f"no held-out normal scores for class {clsname!r}: pass --threshold")
        threshold = self.thresholds[clsname]
        return threshold.value, threshold.false_alarm, "anomalous" if score > threshold.value else "normal"

    def summary(self) -> str:
        """One line: where the thresholds come from and the false-alarm rate they keep."""
        if self.fixed is not None:
            return f"threshold {self.fixed:g} for every class (--threshold: false-alarm rate unknown)"
        values = list(self.thresholds.values())
        rates = sorted({round(100 * t.false_alarm, 1) for t in values})
        kept = f"{rates[0]}%" if len(rates) == 1 else f"{rates[0]}-{rates[-1]}%"
        source = (f"pooled over the {values[0].n} held-out normals of {len(values)} classes" if values[0].pooled
                  else f"per class from {min(t.n for t in values)}-{max(t.n for t in values)} held-out normals")
        return f"thresholds {source}: expected false-alarm rate {kept} (asked {100 * (1 - self.quantile):.1f}%)"

    def shortfall(self) -> str | None:
        """A warning when too few held-out normals keep a lower false-alarm rate than asked, else ``None``."""
        short = [t for t in self.thresholds.values() if t.false_alarm > 1 - self.quantile + 1e-9]
        if not short:
            return None
        needed = math.ceil(self.quantile / (1 - self.quantile) - 1e-9) if self.quantile < 1 else "infinitely many"
        worst = max(short, key=lambda t: t.false_alarm)
        return (f"the asked false-alarm rate {100 * (1 - self.quantile):.1f}% needs at least {needed} held-out normals "
                f"per threshold; with {worst.n} the highest of their scores is the threshold and it keeps "
                f"{100 * worst.false_alarm:.1f}% (lower --quantile, or hold out more: trainer.val_fraction)")


def decision_rule(run: TrainedRun, threshold: float | None, quantile: float) -> DecisionRule:
    """The run's decision rule, refused before any input is read when it cannot be made without ``--threshold``.

    Thresholds are pooled over the classes when the model standardises each class's fused map against its
    normal training maps (``model.map_fusion: normal_zmax``): their image scores then share one scale.

    Raises:
        CheckpointError: no ``threshold``, and a class lacks stored normal scores or the model has no class head.
        ConfigError: ``quantile`` outside [0, 1].
    """
    if not 0.0 <= quantile <= 1.0:
        raise ConfigError(f"--quantile must be in [0, 1], got {quantile}")
    if threshold is not None:
        return DecisionRule({}, float(threshold), quantile)
    missing = [c for c in run.classes if c not in run.normal_scores]
    if missing:
        raise CheckpointError(
            f"{run.checkpoint} holds no held-out normal scores for {', '.join(missing)} (a checkpoint written before "
            "thresholds were stored, or trained with trainer.val_fraction: 0): pass --threshold"
        )
    if run.model.router is None and not any(isinstance(m, GrowingClassifier) for m in run.model.modules()):
        raise CheckpointError(f"the model of {run.checkpoint} has no class head to pick a class's threshold: "
                              "pass --threshold")
    pooled = run.model.map_fusion is not None
    return DecisionRule(decision_thresholds(run.normal_scores, run.classes, quantile, pooled), None, quantile)


@dataclass
class LoadedScan:
    """One input read and preprocessed."""

    scan: ScanInput
    rgb: np.ndarray  # (H, W, 3) uint8 at the input's resolution
    inputs: dict[str, torch.Tensor]  # modality → (3, S, S), the model's modalities
    xyz: np.ndarray | None = None  # (H, W, 3) float32 metres, kept for the input's PLY (None: no PLY)


def _cloud_for_ply(scan: ScanInput, size: tuple[int, int]) -> np.ndarray | None:
    """The cloud of an input to a model without depth, read only for its PLY: None, with a warning, if unusable."""
    try:
        xyz = read_xyz(scan.xyz)
    except DataError as exc:
        LOGGER.warning("no PLY for %s: %s", scan.rgb, exc)
        return None
    if xyz.shape[:2] != size:
        LOGGER.warning("no PLY for %s: xyz size %s of %s differs from the image's %s", scan.rgb, xyz.shape[:2],
                       scan.xyz, size)
        return None
    return xyz


def load_scan(run: TrainedRun, scan: ScanInput, with_cloud: bool = False) -> LoadedScan:
    """Read and preprocess one input as in training; DataError names what is wrong with it.

    ``with_cloud`` keeps the input's point cloud (if it has one) in :attr:`LoadedScan.xyz` for its PLY.
    """
    if run.reads_cloud and scan.xyz is None:
        raise DataError(f"no point cloud for {scan.rgb}: expected ../xyz/{scan.rgb.stem}.tiff (MVTec 3D-AD layout) "
                        f"or {scan.rgb.stem}.tiff beside the image")
    rgb, xyz = read_rgbd_pair(scan.rgb, scan.xyz if run.reads_cloud else None)
    backbone = run.model.backbone
    inputs = model_inputs(rgb, xyz, run.model.image_size, backbone.input_mean, backbone.input_std, scan.xyz,
                          foreground=run.model.score_region == "object", depth=run.uses_depth)
    if with_cloud and xyz is None and scan.xyz is not None:
        xyz = _cloud_for_ply(scan, rgb.shape[:2])
    return LoadedScan(scan, rgb, inputs, xyz if with_cloud else None)


def stack_inputs(batch: list[LoadedScan]) -> dict[str, torch.Tensor]:
    """The inputs of loaded scans as one batch: modality → ``(B, 3, S, S)``."""
    return {m: torch.stack([item.inputs[m] for item in batch]) for m in batch[0].inputs}


def _predict_batch(run: TrainedRun, batch: list[LoadedScan], report: PredictionReport, rule: DecisionRule) -> int:
    """Score, decide and record a batch; returns how many were anomalous."""
    scores = score_batch(run, stack_inputs(batch))
    mean, std = run.model.backbone.input_mean[0], run.model.backbone.input_std[0]
    anomalous = 0
    for i, item in enumerate(batch):
        clsname = run.classes[int(scores["class_index"][i])] if "class_index" in scores else None
        score = float(scores["score"][i])
        limit, false_alarm, decision = rule.decide(clsname, score)
        anomalous += decision == "anomalous"
        height, width = item.rgb.shape[:2]
        amap = cv2.resize(scores["map"][i], (width, height), interpolation=cv2.INTER_LINEAR)
        depth = item.inputs["depth"][0].numpy() * std + mean if "depth" in item.inputs else None
        label = f"{decision} {score:.3g} / {limit:.3g} {clsname or ''}"  # score / threshold
        vmax = 2 * limit if limit > 0 else float(max(amap.max(), 1e-6))
        row = {"class": clsname or "", "score": score, "threshold": limit, "decision": decision,
               "false_alarm_rate": "" if false_alarm is None else false_alarm}
        if "class_probability" in scores:
            row["class_probability"] = float(scores["class_probability"][i])
        row |= {key: float(scores[key][i]) for key in ("score_rgb", "score_depth") if key in scores}
        overlay = prediction_overlay(item.rgb, depth, amap, label, decision == "anomalous", vmax)
        report.add(item.scan, row, amap, overlay, item.xyz, vmax)
    return anomalous


def predict_scans(run: TrainedRun, scans: list[ScanInput], report: PredictionReport, batch_size: int,
                  rule: DecisionRule, clouds: bool = True) -> dict[str, int]:
    """Predict every input (unreadable ones are skipped and recorded with the reason).

    ``clouds``: also write the PLY of every input with a point cloud (:meth:`PredictionReport.add`).

    Returns:
        ``{"predicted", "anomalous", "skipped"}`` counts.
    """
    counts = {"predicted": 0, "anomalous": 0, "skipped": 0}
    pending: list[LoadedScan] = []
    for position, scan in enumerate(tqdm(scans, desc="predicting", unit="image")):
        try:
            pending.append(load_scan(run, scan, clouds))
        except DataError as exc:
            report.skip(scan, str(exc))
            counts["skipped"] += 1
        if pending and (len(pending) == batch_size or position == len(scans) - 1):
            counts["anomalous"] += _predict_batch(run, pending, report, rule)
            counts["predicted"] += len(pending)
            pending = []
    return counts
