"""Test configuration: the repository root goes first on ``sys.path`` (as in every entry point), and
the fixtures of the end-to-end tests: a tiny Synthetic3D set on disk and a tiny config for it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

# The suite is a CPU suite on any host: CUDA stays hidden (here and in every subprocess a test starts), so a
# GPU machine runs the same gloo, CPU-exact tests as CI. `IUMAD_TEST_CUDA=1 pytest -m cuda` runs the CUDA tests.
if os.environ.get("IUMAD_TEST_CUDA") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from datasets.synthetic import make_dataset  # noqa: E402

TINY_CLASSES = ["ball", "box", "cone", "ring"]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic classes at 64 px: 6 train (+2 validation) and 6 test images per class."""
    root = tmp_path_factory.mktemp("tiny") / "Synthetic3D"
    return make_dataset(root, size=64, train_per_class=6, test_per_class=6, seed=1, classes=TINY_CLASSES)


def tiny_config(root: Path, steps: list[list[str]], **trainer) -> dict:
    """A complete small config (64 px, ResNet-18 random init, 1 epoch) over ``root``."""
    return {
        "_base_": str(REPO_ROOT / "experiments" / "_base_" / "ib_iumad.yaml"),
        "seed": 3,
        "dataset": {"name": "Synthetic3D", "root": str(root), "image_size": 64, "batch_size": 4,
                    "eval_batch_size": 8, "workers": 0},
        "model": {"net": [
            {"name": "backbone", "kwargs": {"model_name": "resnet18", "pretrained": False, "out_indices": [1, 2, 3]}},
            {"name": "mamba", "kwargs": {"embed_dim": 32, "num_layers": 2, "d_state": 8}},
            {"name": "vit", "kwargs": {"embed_dim": 32, "num_layers": 2, "num_heads": 2}},
            {"name": "reconstruction", "kwargs": {"hidden_dim": 32, "num_heads": 2, "num_encoder_layers": 2,
                                                  "num_decoder_layers": 2, "dim_feedforward": 64, "dropout": 0.0}},
            {"name": "ib", "kwargs": {"hidden_dim": 32, "num_heads": 2, "z_dim": 16, "temperature": 2.0}},
            {"name": "discriminator", "kwargs": {"sigma": 1.0, "pool_size": 4}},
        ]},
        "trainer": {"epochs": 1, "incremental_epochs": 1, "lr": 1e-3, "save_every_epochs": 0, **trainer},
        "incremental": {"steps": [{"classes": s} for s in steps]},
        "evaluation": {"vis_per_class": 1},
    }


@pytest.fixture(scope="session")
def make_config():
    """:func:`tiny_config` as a fixture."""
    return tiny_config


@pytest.fixture()
def write_config(tmp_path: Path, tiny_root: Path):
    """``(steps, opts...) -> path`` of a tiny config file in ``tmp_path``."""

    def write(steps: list[list[str]], name: str = "config.yaml", **trainer) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tiny_config(tiny_root, steps, **trainer)))
        return path

    return write


class _CreatesFile:
    """Pickled, it asks the loader to call ``pathlib.Path.touch(marker)``: what a crafted checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture()
def crafted_checkpoint():
    """``(path, marker) -> None``: write a checkpoint-like pickle that creates ``marker`` when unpickled freely."""
    import torch

    def write(path: Path, marker: Path) -> None:
        torch.save({"version": 1, "fingerprint": "x", "model": {}, "payload": _CreatesFile(marker)}, path)

    return write
