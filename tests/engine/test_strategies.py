"""Incremental strategies: the registry and its schema, and ``iuf`` against hand-written formulas."""

from __future__ import annotations

import json
import math
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from engine.hooks import StepContext, StepSpec
from engine.strategies import STRATEGIES, Strategy, build_strategy, register_strategy
from engine.strategies.iuf import IUFUpdate, output_projector, protected_layers
from engine.trainer import StepTrainer
from tools import train_val
from utils.config import Field, validate_config
from utils.errors import ConfigError
from utils.optimizer import ProjectedSGD

WIDTH = 6


class TinyRecon(nn.Module):
    """A stand-in model with one protected layer (``reconstructions.rgb.ffn_out``) and one other layer."""

    def __init__(self) -> None:
        super().__init__()
        self.reconstructions = nn.ModuleDict({"rgb": nn.Module()})
        self.reconstructions["rgb"].ffn_out = nn.Linear(4, WIDTH)
        self.head = nn.Linear(WIDTH, 1)

    def forward(self, inputs, features=None, class_ids=None, maps=True):
        tokens = self.reconstructions["rgb"].ffn_out(inputs["rgb"])  # (B, L, 4) -> (B, L, WIDTH)
        return {"prediction": self.head(tokens).mean(dim=(1, 2))}


class SquaredError:
    """``total = mean((prediction - target)²)``, scaled so gradients are far above any clip."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, outputs, batch, trainable_only=False):
        total = self.scale * ((outputs["prediction"] - 3.0) ** 2).mean()
        return {"total": total}


def samples(n: int = 4, tokens: int = 3, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(n, tokens, 4, generator=gen)
    return [{"inputs": {"rgb": image[i]}, "class_id": torch.tensor(0)} for i in range(n)]


def step_cfg(batch: int, clip: float | None, lr: float = 1e-3) -> dict:
    return {
        "seed": 0,
        "dataset": {"batch_size": batch, "eval_batch_size": batch, "workers": 0},
        "trainer": {"lr": lr, "incremental_lr": None, "weight_decay": 0.0, "betas": [0.9, 0.999],
                    "clip_grad_norm": clip, "precision": "fp32",
                    "scheduler": {"type": "constant", "step_size_fraction": 0.8, "step_epochs": None, "gamma": 0.1}},
    }


def train(model, strategy, step: int, data: list[dict], epochs: int, clip: float | None, scale: float = 1.0):
    spec = StepSpec(step, epochs, data, None, False, None, [0])
    trainer = StepTrainer(model, SquaredError(scale), spec, step_cfg(len(data), clip), torch.device("cpu"), [strategy])
    trainer.run()
    return trainer


def test_every_registered_strategy_builds_from_its_schema_defaults():
    for name in STRATEGIES:
        cfg = validate_config({"dataset": {"name": "x", "root": "x"}, "model": {"net": []},
                               "incremental": {"steps": [{"classes": ["a"]}], "regularizer": {"type": name}}})
        assert build_strategy(cfg["incremental"]["regularizer"]).name == name


@pytest.mark.parametrize(("section", "message"), [
    ({"type": "none", "alpha": 0.1}, "unknown config key 'incremental.regularizer.alpha'"),
    ({"type": "iuf", "ema_alpha": 0.1}, "did you mean 'incremental.regularizer.alpha'"),
    ({"type": "iuf", "alpha": 2}, "expected a value in 0..1"),
    ({"type": "gradient_projection"}, "'gradient_projection' was removed"),
    ({"type": "nope"}, "expected one of"),
])
def test_strategy_options_are_checked_by_the_schema(section, message):
    cfg = {"dataset": {"name": "x", "root": "x"}, "model": {"net": []},
           "incremental": {"steps": [{"classes": ["a"]}], "regularizer": section}}
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_output_projector_matches_the_eigenvectors_of_the_gram_matrix():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(20, WIDTH)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    eigenvalues, eigenvectors = np.linalg.eigh(rows.T @ rows)
    order = np.argsort(eigenvalues)[::-1]  # strongest first
    weights = np.log(np.arange(WIDTH) + 1) / np.log(WIDTH)
    expected = sum(w * np.outer(eigenvectors[:, i], eigenvectors[:, i]) for w, i in zip(weights, order))
    gradient = rng.normal(size=(WIDTH, 4))
    projected = output_projector(torch.from_numpy(rows)).numpy() @ gradient
    np.testing.assert_allclose(projected, expected @ gradient, atol=1e-10)


def test_the_top_direction_is_frozen_and_the_weakest_is_free():
    rows = torch.diag(torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64))
    projector = output_projector(rows)
    top, weakest = torch.eye(WIDTH, dtype=torch.float64)[0], torch.eye(WIDTH, dtype=torch.float64)[-1]
    assert torch.allclose(projector @ top, torch.zeros(WIDTH, dtype=torch.float64), atol=1e-15)
    assert torch.allclose(projector @ weakest, weakest, atol=1e-12)
    assert torch.allclose(projector @ torch.eye(WIDTH, dtype=torch.float64)[1],
                          math.log(2) / math.log(WIDTH) * torch.eye(WIDTH, dtype=torch.float64)[1], atol=1e-12)


def test_bases_of_two_steps_equal_the_basis_of_all_rows_stacked():
    torch.manual_seed(0)
    model, strategy = TinyRecon(), IUFUpdate(alpha=0.05, lr=1.0)
    first, second = samples(5, seed=1), samples(5, seed=2)
    outputs = []
    for step, data in enumerate((first, second)):
        train(model, strategy, step, data, epochs=0, clip=None)  # no training: only the bases are collected
        with torch.no_grad():
            layer = model.reconstructions["rgb"].ffn_out
            outputs.append(torch.stack([layer(s["inputs"]["rgb"]).mean(0) for s in data]))
    name = next(iter(protected_layers(model)))
    assert torch.allclose(output_projector(strategy.roots[name]), output_projector(torch.cat(outputs)), atol=1e-8)


def test_iterations_are_pull_then_clip_then_project_then_sgd():
    torch.manual_seed(0)
    model, strategy = TinyRecon(), IUFUpdate(alpha=0.05, lr=1.0)
    old_data, data = samples(6, seed=1), samples(4, seed=2)
    train(model, strategy, 0, old_data, epochs=0, clip=None)  # step 0 trains nothing here, it collects the basis
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = torch.stack([s["inputs"]["rgb"] for s in old_data]) @ anchor["reconstructions.rgb.ffn_out.weight"].T
    projector = output_projector((rows + anchor["reconstructions.rgb.ffn_out.bias"]).mean(dim=1)).float()

    expected = TinyRecon()
    expected.load_state_dict(anchor)
    image = torch.stack([s["inputs"]["rgb"] for s in data])
    for _ in range(3):  # one batch per epoch, three epochs
        with torch.no_grad():  # 1. pull toward the anchor
            for n, p in expected.named_parameters():
                p.mul_(0.95).add_(anchor[n], alpha=0.05)
        expected.zero_grad()
        SquaredError()(expected({"rgb": image}), None)["total"].backward()
        nn.utils.clip_grad_norm_(list(expected.parameters()), 0.1)  # 2. clip
        with torch.no_grad():  # 3. project the protected layer (output side, weight and bias), 4. SGD at lr 1
            for n, p in expected.named_parameters():
                grad = projector @ p.grad.reshape(WIDTH, -1) if n.startswith("reconstructions") else p.grad
                p.sub_(grad.reshape(p.shape))

    trainer = train(model, strategy, 1, data, epochs=3, clip=0.1)
    assert isinstance(trainer.ctx.optimizer, ProjectedSGD)
    for n, p in model.named_parameters():
        assert not torch.allclose(p, anchor[n]), n
        assert torch.allclose(p, expected.state_dict()[n], atol=1e-6), n


def test_drift_from_the_anchor_stays_within_clip_over_alpha():
    torch.manual_seed(0)
    model, strategy = TinyRecon(), IUFUpdate(alpha=0.2, lr=1.0)
    train(model, strategy, 0, samples(4, seed=1), epochs=0, clip=None)
    anchor = [p.detach().clone() for p in model.parameters()]
    clip, iterations = 0.05, 60
    train(model, strategy, 1, samples(4, seed=2), epochs=iterations, clip=clip, scale=1e4)
    drift = math.sqrt(sum(float((p.detach() - a).pow(2).sum()) for p, a in zip(model.parameters(), anchor)))
    bound = clip * (1 - (1 - 0.2) ** iterations) / 0.2
    assert drift <= bound + 1e-6
    assert drift > 0.5 * bound  # the gradients are large: the ball is nearly reached


@register_strategy("toy_for_test")
class ToyStrategy(Strategy):
    """Defined here alone: its own optimizer in incremental steps, a pre-forward hook and an extra loss term."""

    OPTIONS = {"weight": Field((int, float), 0.5, bounds=(0, None))}
    calls: ClassVar[dict[str, list]] = {"optimizers": [], "forwards": 0}

    def __init__(self, weight: float) -> None:
        super().__init__(weight=weight)
        self.weight = weight

    def build_optimizer(self, ctx: StepContext):
        optimizer = None
        if ctx.spec.index > 0:
            optimizer = torch.optim.SGD([p for p in ctx.model.parameters() if p.requires_grad], lr=1e-3)
        self.calls["optimizers"].append((ctx.spec.index, type(optimizer).__name__))
        return optimizer

    def before_iteration(self, ctx: StepContext) -> None:
        self.calls["forwards"] += 1

    def extra_losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        return {"toy": self.weight * ctx.outputs["feature_rec"].abs().mean()}


def test_a_strategy_defined_in_a_test_file_trains_a_run(tmp_path, tiny_root, make_config):
    cfg = make_config(tiny_root, [["ball", "box"], ["cone"]], max_epochs_per_step=2)
    cfg["incremental"]["steps"][1]["epochs"] = 3  # a step's own epochs, capped by trainer.max_epochs_per_step
    cfg["incremental"]["regularizer"] = {"type": "toy_for_test", "weight": 0.25}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert train_val.main(["--config", str(config), "--output", str(tmp_path / "run")]) == 0
    assert ToyStrategy.calls["optimizers"] == [(0, "NoneType"), (1, "SGD")]
    assert ToyStrategy.calls["forwards"] == 3 + 2 * 2  # 3 batches in step 0, 2 per epoch in step 1
    assert ToyStrategy.calls["forwards"] > 0
    log = (tmp_path / "run" / "train_val.log").read_text()
    assert "toy=" in log
    assert "training on ball, box (14 images, 1 epochs)" in log and "training on cone (7 images, 2 epochs)" in log
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["steps"]) == 2
