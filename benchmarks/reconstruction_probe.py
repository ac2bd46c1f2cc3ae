"""Reconstruction probe: can a reconstruction network alone turn a backbone's features into image scores?

One :class:`models.reconstructions.transformer.ReconstructionTransformer` (no conditioner, no fusion)
is trained on the frozen features of one modality of the base-step classes, with UniAD's feature
jitter, and evaluated every ``--eval-every`` iterations on the test set:

* FVU: fraction of unexplained variance of the good test images' features,
  ``Σ‖F_rec − F‖² / Σ‖F − mean(F)‖²`` (0 = perfect reconstruction, 1 = as good as the mean);
* I-AUROC per class (score = max over 2×2 token windows of the reconstruction error), averaged, and
  the same restricted to each defect type (good images + that type).

Together with ``knn_probe.py`` (the same features, scored by a patch memory bank) it separates "the
features carry no signal" from "the reconstruction route loses it" (README "Results on Synthetic3D").

``python benchmarks/reconstruction_probe.py [--root data/Synthetic3D] [--modality rgb] [--iterations 1000]
[--jitter 8] [--opts key=value ...]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from datasets import RGBDDataset, read_meta  # noqa: E402
from models.jitter import feature_jitter  # noqa: E402
from models.model_helper import build_model  # noqa: E402
from models.reconstructions.transformer import ReconstructionTransformer  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.metrics import image_auroc  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "experiments" / "Synthetic3D" / "6_1_with_4_step" / "config.yaml"


@torch.no_grad()
def extract(model, root: Path, records: list[dict], classes: list[str], size: int, modality: str) -> dict:
    """Features ``(N, C, h, w)`` of one modality plus per-record ``label``, ``clsname``, ``label_name`` arrays."""
    backbone = model.backbone
    dataset = RGBDDataset(
        root, records, {c: i for i, c in enumerate(classes)}, size, backbone.input_mean, backbone.input_std,
        model.modalities,
    )
    items = [dataset[i] for i in range(len(dataset))]
    inputs = {m: torch.stack([it["inputs"][m] for it in items]) for m in model.modalities}
    chunks = [model.extract_features({m: x[i : i + 32] for m, x in inputs.items()}) for i in range(0, len(items), 32)]
    features = torch.cat([chunk[modality] for chunk in chunks])
    return {
        "features": features,
        "label": np.array([it["label"] for it in items]),
        "clsname": np.array([r["clsname"] for r in records]),
        "label_name": np.array([r["label_name"] for r in records]),
    }


def evaluate(network: ReconstructionTransformer, test: dict, classes: list[str]) -> dict[str, float]:
    """FVU on good images, mean I-AUROC over classes, and mean I-AUROC per defect type."""
    network.eval()
    with torch.no_grad():
        rec, _ = network(test["features"])
    network.train()
    feats, good = test["features"], test["label"] == 0
    error = torch.linalg.vector_norm(rec - feats, dim=1, keepdim=True)  # N×1×h×w
    scores = F.avg_pool2d(error, 2, stride=1).amax(dim=(1, 2, 3)).numpy()
    centred = feats[good] - feats[good].mean(dim=(0, 2, 3), keepdim=True)
    result = {"fvu": float((rec[good] - feats[good]).pow(2).sum() / centred.pow(2).sum())}

    def auroc(selection: np.ndarray) -> float:
        """Mean over the classes whose selected images include both good and defective ones."""
        per_class = []
        for clsname in classes:
            labels = test["label"][selection & (test["clsname"] == clsname)]
            if 0 < labels.sum() < len(labels):
                per_class.append(image_auroc(labels, scores[selection & (test["clsname"] == clsname)]))
        return float(np.mean(per_class))

    result["i_auroc"] = auroc(np.ones(len(scores), bool))
    for defect in sorted(set(test["label_name"]) - {"good"}):
        result[defect] = auroc(good | (test["label_name"] == defect))
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train the probe, print one line of metrics per evaluation and return the last one."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "data" / "Synthetic3D")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--modality", choices=["rgb", "depth"], default="rgb")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--jitter", type=float, default=8.0, help="feature jitter scale")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--opts", nargs="*", default=[])
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.opts)
    size, classes = cfg["dataset"]["image_size"], cfg["incremental"]["steps"][0]["classes"]
    torch.manual_seed(cfg["seed"])
    backbone = build_model(cfg["model"], size, len(classes)).eval()
    train = [r for r in read_meta(args.root / "train.jsonl") if r["clsname"] in classes]
    test = [r for r in read_meta(args.root / "test.jsonl") if r["clsname"] in classes]
    train_feats = extract(backbone, args.root, train, classes, size, args.modality)["features"]
    test_data = extract(backbone, args.root, test, classes, size, args.modality)
    rec_kwargs = next(e["kwargs"] for e in cfg["model"]["net"] if e["name"] == "reconstruction")
    network = ReconstructionTransformer(train_feats.shape[1], tuple(train_feats.shape[-2:]), **rec_kwargs)
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=cfg["trainer"]["weight_decay"])
    generator = torch.Generator().manual_seed(cfg["seed"])
    for iteration in range(1, args.iterations + 1):
        batch = train_feats[torch.randint(len(train_feats), (args.batch_size,), generator=generator)]
        rec, _ = network(feature_jitter(batch, args.jitter, 1.0, generator))
        loss = F.mse_loss(rec, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if iteration % args.eval_every == 0 or iteration == args.iterations:
            metrics = evaluate(network, test_data, classes)
            print(f"iteration {iteration}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()), flush=True)
    return metrics


if __name__ == "__main__":
    main()
