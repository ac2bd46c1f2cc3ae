"""Shared model-test helpers: a small network config (resnet18 at 64 px) and the paper's default one."""

import copy

import pytest
import torch

_NET = [
    {
        "name": "backbone",
        "type": "models.backbones.TimmFeatureExtractor",
        "frozen": True,
        "kwargs": {"model_name": "resnet18", "pretrained": False, "checkpoint_path": None, "out_indices": [1, 2, 3]},
    },
    {"name": "neck", "prev": "backbone", "type": "models.necks.MultiScaleConcat", "kwargs": {"out_stride": 16}},
    {
        "name": "mamba",
        "type": "models.mamba.MambaDecoder",
        "kwargs": {"embed_dim": 16, "num_layers": 2, "d_state": 4, "num_heads": 2},
    },
    {
        "name": "vit",
        "type": "models.conditioners.ViTConditioner",
        "kwargs": {"embed_dim": 16, "num_layers": 2, "num_heads": 2},
    },
    {
        "name": "reconstruction",
        "prev": "neck",
        "type": "models.reconstructions.ReconstructionTransformer",
        "kwargs": {
            "hidden_dim": 32,
            "num_heads": 4,
            "num_encoder_layers": 2,
            "num_decoder_layers": 2,
            "dim_feedforward": 64,
            "dropout": 0.1,
        },
    },
    {
        "name": "ib",
        "prev": "reconstruction",
        "type": "models.fusion.IBFusion",
        "kwargs": {"hidden_dim": 32, "num_heads": 4, "z_dim": 16, "temperature": 2.0},
    },
    {"name": "sum", "prev": "reconstruction", "type": "models.fusion.SumFusion", "kwargs": {}},
    {"name": "discriminator", "type": "models.discriminator.Discriminator", "kwargs": {"sigma": 2.0, "pool_size": 8}},
]

_DEFAULT_KWARGS = {
    "backbone": {
        "model_name": "efficientnet_b4",
        "pretrained": False,
        "checkpoint_path": None,
        "out_indices": [0, 1, 2, 3],
    },
    "mamba": {"embed_dim": 128, "num_layers": 4, "d_state": 16},
    "vit": {"embed_dim": 128, "num_layers": 4, "num_heads": 4},
    "reconstruction": {
        "hidden_dim": 256,
        "num_heads": 8,
        "num_encoder_layers": 4,
        "num_decoder_layers": 4,
        "dim_feedforward": 1024,
        "dropout": 0.1,
    },
    "ib": {"hidden_dim": 256, "num_heads": 8, "z_dim": 128, "temperature": 2.0},
    "discriminator": {"sigma": 4.0, "pool_size": 16},
}


def make_model_cfg(modalities=("rgb", "depth"), condition="mamba", fusion="ib", default=False):
    """A fresh ``model:`` config; ``default=True`` gives the paper's sizes (EfficientNet-B4, 224 px)."""
    net = copy.deepcopy(_NET)
    if default:
        for entry in net:
            if entry["name"] in _DEFAULT_KWARGS:
                entry["kwargs"] = copy.deepcopy(_DEFAULT_KWARGS[entry["name"]])
    return {
        "modalities": list(modalities),
        "condition": condition,
        "fusion": fusion,
        "net": net,
        "jitter": {"scale": 20.0, "prob": 1.0},
    }


@pytest.fixture
def model_cfg():
    """Factory of small model configs (64-px inputs)."""
    return make_model_cfg


@pytest.fixture
def one_thread():
    """Small models run faster, and far steadier on a shared machine, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
