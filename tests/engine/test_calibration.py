"""``model.feature_scale: train_rms``: the factors are measured before the base step and kept afterwards."""

from __future__ import annotations

import pytest
import torch
import yaml

from datasets import RGBDDataset, read_meta
from models.model_helper import build_model
from tools.train_val import main

STEPS = [["ball", "box"], ["cone"]]


def _token_energy_of_base_classes(cfg: dict, state: dict, root) -> torch.Tensor:
    """Mean ‖F_m‖² over the tokens of the base classes' training images, computed here from scratch."""
    model = build_model(cfg["model"], cfg["dataset"]["image_size"], num_classes=2).eval()
    model.load_state_dict(state)  # the random backbone of the run
    records = [r for r in read_meta(root / "train.jsonl") if r["clsname"] in STEPS[0]]
    dataset = RGBDDataset(root, records, {"ball": 0, "box": 1}, cfg["dataset"]["image_size"])
    samples = [dataset[i] for i in range(len(dataset))]
    with torch.no_grad():
        features = model.extract_features(
            torch.stack([s["image"] for s in samples]), torch.stack([s["depth"] for s in samples])
        )
    return torch.stack([features[m].double().pow(2).sum(1).mean() for m in ("rgb", "depth")])


@pytest.mark.parametrize("feature_cache", ["memory", "off"])
def test_train_rms_factors_come_from_the_base_training_images_and_stay(
    tmp_path, tiny_root, make_config, feature_cache
):
    cfg = make_config(tiny_root, STEPS, feature_cache=feature_cache)
    cfg["model"]["feature_scale"] = "train_rms"
    cfg["evaluation"]["vis_per_class"] = 0
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(config), "--output", str(tmp_path / "out")]) == 0

    states = [torch.load(tmp_path / "out" / f"step_{k}" / "ckpt.pth", weights_only=False)["model"] for k in (0, 1)]
    factors = [state["modality_scale"] for state in states]
    resolved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    expected = _token_energy_of_base_classes(resolved, states[0], tiny_root).rsqrt().float()
    torch.testing.assert_close(factors[0], expected, rtol=1e-5, atol=0)
    assert torch.equal(factors[1], factors[0])
    assert not torch.allclose(factors[0], torch.ones(2))
