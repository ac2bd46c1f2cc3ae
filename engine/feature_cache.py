"""Backbone-feature cache: the frozen MFEN's features of each training image, computed once per step.

The backbone is frozen and training applies no input augmentation by default, so the features of a
training image are the same in every epoch. :func:`build_feature_cache` runs the backbone once over a
step's training set and returns a dataset of ``{image, depth, class_id, features}`` samples; the
trainer then calls ``model.forward_from_features`` (feature jitter is still drawn fresh every time).
Small sets stay in memory; larger ones go to ``.pt`` files on disk keyed by the sample's files (name,
size and modification time) and the backbone's configuration, so they are also reused across steps
and runs, and a regenerated dataset never serves stale features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from datasets.depth import ISOLATED_JUMP
from engine.batch import batch_inputs
from utils.dist import barrier, broadcast_object, get_rank, get_world_size, local_world_size

__all__ = ["CachedFeatureDataset", "build_feature_cache", "cache_key"]

LOGGER = logging.getLogger(__name__)



class CachedFeatureDataset(Dataset):
    """Samples with precomputed backbone features, held in memory or read from ``.pt`` files."""

    def __init__(self, samples: list[dict[str, Any]] | None = None, files: list[Path] | None = None) -> None:
        self.samples = samples
        self.files = files

    def __len__(self) -> int:
        return len(self.samples) if self.samples is not None else len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.samples is not None:
            return self.samples[index]
        return torch.load(self.files[index], map_location="cpu", weights_only=True)


def cache_key(
    root: str,
    filename: str,
    class_id: int,
    backbone_cfg: dict,
    image_size: int,
    modalities: list[str],
    files: list[Path] = (),
) -> str:
    """Stable key of one cached sample: its file and class id + everything that changes its features.

    ``files`` (the sample's rgb and xyz files) enter with their size and modification time, so a
    regenerated or edited file gets a new key and never reads the features of its old content; with depth,
    so do the depth image's own settings (:mod:`datasets.depth`).
    """
    stamps = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in map(Path, files)]
    depth_image = {"isolated_jump": ISOLATED_JUMP} if "depth" in modalities else None
    text = json.dumps([root, filename, class_id, backbone_cfg, image_size, sorted(modalities), stamps, depth_image],
                      sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def _estimate_gib(model: torch.nn.Module, sample: dict[str, Any], image_size: int, count: int, device) -> float:
    with torch.no_grad():
        inputs = {m: x[None].to(device) for m, x in sample["inputs"].items()}
        feats = model.extract_features(inputs)
    per_sample = sum(f.numel() for f in feats.values()) + len(inputs) * 3 * image_size * image_size
    return per_sample * 4 * count / 2**30


def _entry(batch: dict[str, Any], feats: dict[str, torch.Tensor], i: int) -> dict[str, Any]:
    """Sample ``i`` of a batch with its features: the inputs (the conditioner reads them), labels, features."""
    return {
        "inputs": {m: x[i] for m, x in batch["inputs"].items()},
        "class_id": batch["class_id"][i],
        "label": batch["label"][i],
        "features": {m: f[i].cpu().clone() for m, f in feats.items()},
    }


def _memory_cache(model, dataset, device, batch_size: int, workers: int, show_progress: bool) -> CachedFeatureDataset:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    samples: list[dict[str, Any]] = []
    for batch in tqdm(loader, desc="caching backbone features", leave=False, disable=not show_progress):
        feats = model.extract_features(batch_inputs(batch, device))
        samples.extend(_entry(batch, feats, i) for i in range(len(batch["label"])))
    return CachedFeatureDataset(samples=samples)


def _write_missing(model, dataset, paths: dict[int, Path], device, batch_size: int, workers: int,
                   show_progress: bool) -> None:
    """Compute and atomically write the entries of ``paths`` (index → file) that are not on disk yet."""
    todo = [i for i, path in paths.items() if not path.is_file()]
    if not todo:
        return
    next(iter(paths.values())).parent.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, shuffle=False, num_workers=workers)
    position = 0
    for batch in tqdm(loader, desc="caching backbone features", leave=False, disable=not show_progress):
        feats = model.extract_features(batch_inputs(batch, device))
        for i in range(len(batch["label"])):
            path = paths[todo[position]]
            tmp = path.with_suffix(f".{get_rank()}.{os.getpid()}.tmp")  # unique across the processes of every node
            torch.save(_entry(batch, feats, i), tmp)
            tmp.replace(path)
            position += 1


@torch.no_grad()
def build_feature_cache(
    model: torch.nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    workers: int,
    mode: str,
    max_gib: float,
    disk_dir: Path,
    key_fn,
    show_progress: bool,
) -> CachedFeatureDataset:
    """Run ``model.extract_features`` once over ``dataset``.

    In memory every process holds a copy of the whole set (its sampler may draw any sample), so ``auto``
    weighs the estimate times the processes on rank 0's machine (``LOCAL_WORLD_SIZE``), and every rank takes
    rank 0's choice. On disk the processes
    of a run share one set of files (and the page cache): each rank writes its share (samples ``rank``,
    ``rank + world``, ...), then, after a barrier, whatever it still cannot see (a node whose output
    folder is not shared with the others).

    Args:
        model: the unwrapped IB-IUMAD model (only its frozen part runs here).
        dataset: a step's training :class:`~datasets.RGBDDataset` (unaugmented; ``records``, ``class_ids``).
        mode: ``memory``, ``disk`` or ``auto`` (memory when the estimate is below ``max_gib``).
        disk_dir: folder of the on-disk cache.
        key_fn: ``(filename, class_id) -> key`` (see :func:`cache_key`).
    """
    if mode == "auto":
        copies = local_world_size()
        size = _estimate_gib(model, dataset[0], dataset[0]["inputs"]["rgb"].shape[-1], len(dataset), device) * copies
        mode = broadcast_object("memory" if size <= max_gib else "disk")  # one choice for every rank (barrier below)
        LOGGER.info("feature cache: %.2f GiB estimated (%d process(es) on this machine) -> %s", size, copies, mode)
    if mode == "memory":
        return _memory_cache(model, dataset, device, batch_size, workers, show_progress)
    paths = {
        i: disk_dir / f"{key_fn(r['filename'], dataset.class_ids[r['clsname']])}.pt"
        for i, r in enumerate(dataset.records)
    }
    rank, world = get_rank(), get_world_size()
    own = {i: path for i, path in paths.items() if i % world == rank}
    _write_missing(model, dataset, own, device, batch_size, workers, show_progress)
    barrier()
    _write_missing(model, dataset, paths, device, batch_size, workers, show_progress)
    return CachedFeatureDataset(files=[paths[i] for i in range(len(paths))])
