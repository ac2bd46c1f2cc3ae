"""Foreground scoring: how much of a trained run's image scores comes from outside the object.

Scores a finished run's test set once (:func:`engine.evaluator.score_dataset`) and prints, per map (fused and
per modality), the mean I-AUROC over classes of

* the usual image score (the whole map);
* the image score of the map kept on the object footprint (:func:`datasets.footprint.object_footprint`) and
  set to its minimum elsewhere (:func:`models.discriminator.keep_on_region`), scored by the run's own
  discriminator: what ``model.score_region: object`` scores, here with footprint parameters to study;

and the share of normal test images whose highest pooled window touches the footprint. Where a reconstruction
model's normal maps peak on an unpredictable background (a textured table), the second score is much higher
than the first (docs/parts3d.md, section 3). A run trained with ``score_region: object`` is scored whole here
first, so both columns come from the same weights.

``python benchmarks/foreground_scoring.py --run RUN [--plane-distance 0.0015] [--margin 0]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from datasets import RGBDDataset, load_meta  # noqa: E402
from datasets.footprint import MARGIN, PLANE_DISTANCE, object_footprint  # noqa: E402
from datasets.io import read_xyz  # noqa: E402
from engine.evaluator import score_dataset  # noqa: E402
from engine.predictor import load_trained_run  # noqa: E402
from models.discriminator import keep_on_region  # noqa: E402
from utils.metrics import image_auroc  # noqa: E402

MAPS = {"fused": "", "rgb": "rgb.", "depth": "depth."}


def footprints(root: Path, records: list[dict], size: int, plane_distance: float, margin: int) -> torch.Tensor:
    """``(N, 1, S, S)`` float 0/1 object footprints of the records' clouds, resized like the model's depth input."""
    clouds = (cv2.resize(read_xyz(root / r["xyzname"]), (size, size), interpolation=cv2.INTER_NEAREST) for r in records)
    masks = [object_footprint(xyz, plane_distance, margin) for xyz in clouds]
    return torch.from_numpy(np.stack(masks).astype(np.float32))[:, None]


def peaks_on_foreground(maps: torch.Tensor, masks: torch.Tensor, pool: int) -> np.ndarray:
    """``(N,)`` bool: the highest ``pool``-window of each map touches its mask."""
    pooled_maps = F.avg_pool2d(maps, pool, stride=1).flatten(1)
    pooled_masks = F.avg_pool2d(masks, pool, stride=1).flatten(1)
    return (pooled_masks.gather(1, pooled_maps.argmax(1, keepdim=True))[:, 0] > 0).numpy()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print the table; return map → ``{"whole", "foreground", "normal_peaks_on_object"}`` (fractions)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run folder of tools/train_val.py")
    parser.add_argument("--plane-distance", type=float, default=PLANE_DISTANCE,
                        help="metres from the background plane below which a point is background")
    parser.add_argument("--margin", type=int, default=MARGIN, help="pixels the footprint is grown by")
    args = parser.parse_args(argv)
    run = load_trained_run(args.run, None, torch.device("cpu"))
    dcfg, model = run.cfg["dataset"], run.model
    model.score_region = "image"
    root, size = Path(dcfg["root"]), dcfg["image_size"]
    _, test = load_meta(root, dcfg.get("meta_dir"), run.classes, dcfg["layout"])
    test = [r for r in test if r["clsname"] in run.classes]
    class_ids = {name: i for i, name in enumerate(run.classes)}
    dataset = RGBDDataset(root, test, class_ids, size, model.backbone.input_mean, model.backbone.input_std,
                          model.modalities)
    records = score_dataset(model, dataset, torch.device("cpu"), dcfg["eval_batch_size"])
    labels, classes = np.array([r["label"] for r in records]), np.array([r["clsname"] for r in records])
    masks = footprints(root, test, size, args.plane_distance, args.margin)

    def mean_auroc(scores: np.ndarray) -> float:
        return float(np.mean([image_auroc(labels[classes == c], scores[classes == c]) for c in run.classes]))

    table = {}
    for name, prefix in MAPS.items():
        if prefix + "map" not in records[0]:
            continue
        maps = torch.from_numpy(np.stack([r[prefix + "map"].astype(np.float32) for r in records]))[:, None]
        peaks = peaks_on_foreground(maps, masks, min(model.discriminator.pool_size, size))
        table[name] = {
            "whole": mean_auroc(np.array([r[prefix + "score"] for r in records])),
            "foreground": mean_auroc(model.discriminator.image_score(keep_on_region(maps, masks)).numpy()),
            "normal_peaks_on_object": float(peaks[labels == 0].mean()),
        }
    print("| map | I-AUROC | I-AUROC, object only | normal maxima on the object |\n|---|---:|---:|---:|")
    for name, row in table.items():
        print(f"| {name} | {100 * row['whole']:.1f} | {100 * row['foreground']:.1f} | "
              f"{100 * row['normal_peaks_on_object']:.0f} % |")
    return table


if __name__ == "__main__":
    main()
