"""Evaluation after a step: every test image of every class seen so far, per-class metrics per map.

The test set is sharded across ranks (rank r takes samples r, r + world, ...: nothing is duplicated
or dropped when the size does not divide), each rank scores its shard, and rank 0 alone gathers the
records (the other ranks never hold more than their shard) and computes the metrics. Metric keys:
``i_auroc``, ``p_auroc``, ``aupro_30``, ``aupro_01`` for the fused map and the same with a ``rgb.`` /
``depth.`` prefix for the per-modality maps; with class adapters ``routing``, the share of test images
the prototype router sent through their own class's adapters.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from datasets import RGBDDataset, build_shard_loader
from engine.batch import autocast, batch_inputs
from utils.dist import broadcast_object, gather_objects_to_main, is_main_process
from utils.metrics import aupro, image_auroc, pixel_auroc
from utils.vis import denormalize_image, save_anomaly_figure

__all__ = ["METRICS", "evaluate", "score_dataset", "class_metrics"]

LOGGER = logging.getLogger(__name__)

METRICS = ("i_auroc", "p_auroc", "aupro_30", "aupro_01")


@torch.no_grad()
def score_dataset(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int, precision: str = "fp32",
    workers: int = 0,
) -> list[dict[str, Any]]:
    """Score this rank's shard of ``dataset``; on rank 0 return one record per sample in index order, else ``[]``.

    ``precision`` (``trainer.precision``): the networks run under bf16 autocast for ``bf16``; maps are float32.

    Each record: ``index``, ``clsname``, ``label``, ``mask`` (H, W) uint8, and per map prefix ``p``
    (``""`` fused, ``"rgb."``, ``"depth."``): ``p + "score"`` float and ``p + "map"`` (H, W) float16; with class
    adapters also ``routed_right`` (the router chose the image's own class); with object footprints in the
    inputs (``model.score_region: object``) also ``region`` (H, W) bool, the pixels scored.
    """
    loader, indices = build_shard_loader(dataset, batch_size, workers, pin_memory=device.type == "cuda")
    model.eval()
    records: list[dict[str, Any]] = []
    position = 0
    for batch in tqdm(loader, desc="evaluating", leave=False, disable=not is_main_process()):
        with autocast(device, precision):
            out = model(batch_inputs(batch, device))
        prefixes = {"": ""} | {f"{m}.": f"_{m}" for m in ("rgb", "depth") if f"anomaly_map_{m}" in out}
        wanted = [f"{kind}{suffix}" for suffix in prefixes.values() for kind in ("image_score", "anomaly_map")]
        out = {k: out[k].float().cpu() for k in wanted} | ({"route": out["route"].cpu()} if "route" in out else {})
        for i in range(len(batch["label"])):
            record = {
                "index": indices[position],
                "clsname": batch["clsname"][i],
                "label": int(batch["label"][i]),
                "mask": (batch["mask"][i, 0].numpy() > 0.5).astype(np.uint8),
            }
            if "route" in out:  # class adapters: whose adapters scored the image, and whose they should be
                record["routed_right"] = int(out["route"][i]) == int(batch["class_id"][i])
            if "foreground" in batch["inputs"]:
                record["region"] = batch["inputs"]["foreground"][i, 0].numpy() > 0.5
            for prefix, suffix in prefixes.items():
                record[prefix + "score"] = float(out[f"image_score{suffix}"][i])
                record[prefix + "map"] = out[f"anomaly_map{suffix}"][i, 0].numpy().astype(np.float16)
            records.append(record)
            position += 1
    parts = gather_objects_to_main(records)
    if parts is None:  # not rank 0: its shard is on rank 0 now
        return []
    return sorted((r for part in parts for r in part), key=lambda r: r["index"])


def _safe(metric, name: str, clsname: str, *args, **kwargs) -> float:
    """``metric(*args)``, or NaN (logged) when it is undefined for this class (e.g. no defective image)."""
    try:
        return float(metric(*args, **kwargs))
    except ValueError as exc:
        LOGGER.warning("%s undefined for class %s: %s", name, clsname, exc)
        return float("nan")


def class_metrics(records: list[dict[str, Any]], aupro_mode: str) -> dict[str, float]:
    """I-AUROC, P-AUROC, AUPRO@0.3 and AUPRO@0.01 of one class, for every map present in ``records``."""
    clsname = records[0]["clsname"]
    labels = np.array([r["label"] for r in records])
    masks = np.stack([r["mask"] for r in records])
    result: dict[str, float] = {}
    for prefix in ("", "rgb.", "depth."):
        if prefix + "score" not in records[0]:
            continue
        scores = np.array([r[prefix + "score"] for r in records])
        maps = np.stack([r[prefix + "map"] for r in records]).astype(np.float32)
        result[prefix + "i_auroc"] = _safe(image_auroc, "I-AUROC", clsname, labels, scores)
        result[prefix + "p_auroc"] = _safe(pixel_auroc, "P-AUROC", clsname, masks, maps)
        for key, limit in (("aupro_30", 0.3), ("aupro_01", 0.01)):
            result[prefix + key] = _safe(aupro, key, clsname, masks, maps, fpr_limit=limit, mode=aupro_mode)
    if "routed_right" in records[0]:
        result["routing"] = float(np.mean([r["routed_right"] for r in records]))
    return result


def _save_figures(
    dataset: RGBDDataset, by_class: dict[str, list[dict[str, Any]]], vis_dir: Path, per_class: int
) -> None:
    for clsname, records in by_class.items():
        chosen = sorted(records, key=lambda r: -r["label"])[:per_class]
        maps = np.stack([r["map"] for r in records]).astype(np.float32)
        vmin, vmax = float(maps.min()), float(maps.max())
        for record in chosen:
            sample = dataset[record["index"]]
            name = Path(sample["filename"]).with_suffix("").as_posix().replace("/", "_")
            save_anomaly_figure(
                vis_dir / f"{name}.png",
                rgb=denormalize_image(sample["inputs"]["rgb"], dataset.mean, dataset.std),
                depth=sample["inputs"]["depth"][0].numpy() if "depth" in sample["inputs"] else None,
                gt=record["mask"],
                amap=record["map"].astype(np.float32),
                title=f"{clsname} label={record['label']} score={record['score']:.3f}",
                vmin=vmin,
                vmax=vmax,
            )


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    aupro_mode: str,
    vis_dir: Path | None,
    vis_per_class: int,
    precision: str = "fp32",
    workers: int = 0,
) -> dict[str, dict[str, float]]:
    """Per-class metrics on ``dataset`` (all ranks score; rank 0 computes; every rank returns the result)."""
    records = score_dataset(model, dataset, device, batch_size, precision, workers)
    by_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_class[record["clsname"]].append(record)
    per_class: dict[str, dict[str, float]] = {}
    if is_main_process():
        per_class = {name: class_metrics(recs, aupro_mode) for name, recs in sorted(by_class.items())}
        if vis_dir is not None and vis_per_class > 0:
            _save_figures(dataset, by_class, vis_dir, vis_per_class)
    return broadcast_object(per_class)
