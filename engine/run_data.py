"""The data of an incremental run: its meta records and the datasets each step trains and is evaluated on.

Rank 0 reads the meta files (built where missing, :func:`datasets.load_meta`) and sends the records to
the other ranks, so a node without a shared file system never reads its own folder for them; every
rank reads the images. A step's training normals are split into the ones that train and the held-out
ones that calibrate the thresholds (``trainer.val_fraction``); training sets go through the backbone
feature cache (``trainer.feature_cache``) when it is on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from datasets import RGBDDataset, load_meta
from engine.feature_cache import build_feature_cache, cache_key
from utils.dist import decided_on_main, is_main_process
from utils.errors import DataError
from utils.seeding import derive_seed

__all__ = ["RunData", "StepSets"]


@dataclass
class StepSets:
    """What one step trains on.

    Attributes:
        train: the training set (cached backbone features when ``uses_cache``).
        uses_cache: whether ``train`` (and ``val``) hold cached features.
        images: number of training images.
        held_out: the held-out training normals (raw images, for the thresholds), or ``None``.
        val: the held-out normals the epoch is chosen on (``trainer.select: val``), or ``None``.
        scored_train: the training images as the model scores them (raw images, with the object footprint
            where maps are scored on it), for the fused map's statistics.
    """

    train: Dataset
    uses_cache: bool
    images: int
    held_out: RGBDDataset | None
    val: Dataset | None
    scored_train: RGBDDataset


class RunData:
    """Meta records and datasets of a run.

    Args:
        cfg: the resolved config.
        model: the run's model (its backbone's preprocessing and its modalities shape the samples).
        cache_dir: folder of the disk feature cache.
        device: where the cache's features are computed.
    """

    def __init__(self, cfg: dict, model: nn.Module, cache_dir: Path, device: torch.device) -> None:
        self.cfg = cfg
        self.model = model
        self.cache_dir = cache_dir
        self.device = device
        self.train_records: list[dict] = []
        self.test_records: list[dict] = []

    def load(self, classes: list[str]) -> None:
        """Read the checked records of ``classes`` on rank 0 and share them; every node checks its image root.

        Raises:
            DataError: the root is missing on this node, or what :func:`datasets.load_meta` refuses.
        """
        dcfg = self.cfg["dataset"]
        if not Path(dcfg["root"]).is_dir():  # every node reads the images
            raise DataError(f"dataset root not found: {dcfg['root']} (dataset.root in the config)")
        self.train_records, self.test_records = decided_on_main(
            lambda: load_meta(dcfg["root"], dcfg["meta_dir"], classes, dcfg["layout"])
        )

    def dataset(self, records: list[dict], class_ids: dict[str, int], scored: bool = True) -> RGBDDataset:
        """The samples of ``records`` whose class is in ``class_ids``, as the model reads them.

        ``scored``: the model scores them (test and held-out sets), so they carry the object footprint where
        ``model.score_region`` is ``object``; a training set never needs it.
        """
        backbone = self.model.backbone
        return RGBDDataset(
            self.cfg["dataset"]["root"],
            records,
            class_ids,
            self.cfg["dataset"]["image_size"],
            mean=backbone.input_mean,
            std=backbone.input_std,
            modalities=self.model.modalities,
            foreground=scored and self.model.score_region == "object",
        )

    def test_set(self, class_ids: dict[str, int]) -> RGBDDataset:
        """The test images of the classes of ``class_ids``."""
        return self.dataset([r for r in self.test_records if r["clsname"] in class_ids], class_ids)

    def step_sets(self, step: int, class_ids: dict[str, int]) -> StepSets:
        """The training, held-out and model-selection sets of a step that learns the classes of ``class_ids``."""
        records = [r for r in self.train_records if r["clsname"] in class_ids]
        records, val_records = self._split_train_val(records, list(class_ids), step)
        held_out_ids = {r["clsname"]: class_ids[r["clsname"]] for r in val_records}
        held_out = self.dataset(val_records, held_out_ids) if val_records else None
        raw_train = self.dataset(records, class_ids, scored=False)
        train, uses_cache = self._maybe_cache(raw_train)
        val = None
        if self.cfg["trainer"]["select"] == "val" and held_out is not None:  # a loss only: no footprints
            unscored = self.dataset(val_records, held_out_ids, scored=False)
            val = self._maybe_cache(unscored)[0] if uses_cache else unscored
        return StepSets(train, uses_cache, len(raw_train), held_out, val, self.dataset(records, class_ids))

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

    def _maybe_cache(self, dataset: RGBDDataset) -> tuple[Dataset, bool]:
        tcfg, dcfg = self.cfg["trainer"], self.cfg["dataset"]
        if tcfg["feature_cache"] == "off":
            return dataset, False
        backbone = next(e for e in self.cfg["model"]["net"] if e.get("name") == "backbone")
        partners = {r["filename"]: [r[k] for k in ("filename", "xyzname") if r.get(k)] for r in dataset.records}

        def key(filename: str, class_id: int) -> str:
            files = [Path(dcfg["root"]) / name for name in partners[filename]]
            return cache_key(dcfg["root"], filename, class_id, backbone, dcfg["image_size"],
                             self.cfg["model"]["modalities"], files)

        cached = build_feature_cache(
            self.model, dataset, self.device, dcfg["eval_batch_size"], dcfg["workers"], tcfg["feature_cache"],
            tcfg["feature_cache_max_gb"], self.cache_dir, key, is_main_process(),
        )
        return cached, True
