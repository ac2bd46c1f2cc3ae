"""Incremental regularizers: what keeps a step from overwriting what earlier steps learned.

* ``none``: plain fine-tuning with the paper's losses.
* ``gradient_projection`` (IUF-style): after every step, the token-averaged inputs of each
  reconstruction-transformer FFN output layer (``ffn_out``) on that step's training images are
  merged into a per-layer basis by SVD. During later steps the weight gradient ``G (out, in)`` of
  those layers is projected ``G ← G (I − V diag(1 − w) Vᵀ)`` with ``w_i = log(i+1)/log(d)``
  (``i`` = 1 for the dominant direction, ``d`` = input width): dominant directions of old tasks are
  nearly frozen, minor ones stay free, and the orthogonal complement of the basis is untouched —
  so it works for any number of samples, also fewer than ``d``.
* ``ema_pull``: after every epoch of an incremental step, θ ← α θ_old + (1 − α) θ, θ_old being the
  parameters at the start of the step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["Regularizer", "NoRegularizer", "GradientProjection", "EMAPull", "build_regularizer"]


class Regularizer:
    """Hooks the trainer calls with the unwrapped model (never the DDP wrapper); the base class does nothing."""

    def begin_step(self, model: nn.Module, step: int) -> None:
        """Called once before training step ``step`` (after the previous checkpoint is loaded)."""

    def before_optimizer_step(self, model: nn.Module) -> None:
        """Called after ``backward()`` (gradients are final, also under DDP) and before clipping."""

    def after_epoch(self, model: nn.Module) -> None:
        """Called at the end of every epoch."""

    def end_step(self, model: nn.Module, batches: Any, device: torch.device) -> None:
        """Called after the step's training with an iterable of its training batches (images)."""

    def state_dict(self) -> dict[str, Any]:
        """What must survive into the next step's checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class NoRegularizer(Regularizer):
    """Plain fine-tuning."""


def _ffn_out_layers(model: nn.Module) -> dict[str, nn.Linear]:
    return {name: mod for name, mod in model.named_modules() if name.endswith("ffn_out") and isinstance(mod, nn.Linear)}


class GradientProjection(Regularizer):
    """IUF-style projection of the FFN-output layers' gradients away from old tasks' input directions.

    Args:
        energy: fraction of the activation energy the kept basis explains (per layer).
        max_samples: at most this many training images are used to collect activations per step.
    """

    def __init__(self, energy: float, max_samples: int) -> None:
        self.energy = energy
        self.max_samples = max_samples
        self.bases: dict[str, torch.Tensor] = {}
        self.singular_values: dict[str, torch.Tensor] = {}
        self.active = False

    def begin_step(self, model: nn.Module, step: int) -> None:  # noqa: D102
        self.active = step > 0 and bool(self.bases)
        self._projectors = {name: self._projector(name) for name in self.bases} if self.active else {}

    def _projector(self, name: str) -> torch.Tensor:
        """``I − V diag(1 − w) Vᵀ`` of shape (d, d) for the layer's basis ``V`` (d, r)."""
        basis = self.bases[name]
        d, r = basis.shape
        ranks = torch.arange(1, r + 1, dtype=basis.dtype)
        weights = torch.log(ranks + 1) / math.log(max(d, 2))
        return torch.eye(d, dtype=basis.dtype) - basis @ torch.diag(1 - weights.clamp(max=1.0)) @ basis.T

    def before_optimizer_step(self, model: nn.Module) -> None:  # noqa: D102
        if not self.active:
            return
        for name, layer in _ffn_out_layers(model).items():
            grad = layer.weight.grad
            if name in self._projectors and grad is not None:
                projector = self._projectors[name].to(grad.device, grad.dtype)
                grad.copy_(grad @ projector)

    @torch.no_grad()
    def end_step(self, model: nn.Module, batches: Any, device: torch.device) -> None:  # noqa: D102
        layers = _ffn_out_layers(model)
        collected: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        handles = [layer.register_forward_hook(self._make_hook(collected[name])) for name, layer in layers.items()]
        try:
            was_training = model.training
            model.eval()
            seen = 0
            for batch in batches:
                model(batch["image"].to(device), batch["depth"].to(device))
                seen += batch["image"].shape[0]
                if seen >= self.max_samples:
                    break
            model.train(was_training)
        finally:
            for handle in handles:
                handle.remove()
        for name, rows in collected.items():
            if rows:
                self._merge(name, torch.cat(rows)[: self.max_samples])

    @staticmethod
    def _make_hook(store: list[torch.Tensor]):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            x = inputs[0].detach().float().cpu()
            # (B, L, d) or (L, B, d) -> token average per image (B, d); batch-first is the house layout.
            store.append(x.mean(dim=1) if x.dim() == 3 else x)

        return hook

    def _merge(self, name: str, activations: torch.Tensor) -> None:
        """Merge (n, d) activations into the layer's basis (old basis rows weighted by their singular values)."""
        rows = activations.double()
        if name in self.bases:
            old = (self.bases[name] * self.singular_values[name]).T  # (r, d)
            rows = torch.cat([old, rows])
        _, s, vh = torch.linalg.svd(rows, full_matrices=False)
        energy = torch.cumsum(s**2, 0) / (s**2).sum().clamp_min(1e-12)
        keep = int(torch.searchsorted(energy, torch.tensor(self.energy, dtype=energy.dtype)).item()) + 1
        keep = min(keep, len(s))
        self.bases[name] = vh[:keep].T.float().contiguous()
        self.singular_values[name] = s[:keep].float()

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"bases": dict(self.bases), "singular_values": dict(self.singular_values)}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: D102
        self.bases = dict(state.get("bases", {}))
        self.singular_values = dict(state.get("singular_values", {}))


class EMAPull(Regularizer):
    """θ ← α θ_old + (1 − α) θ after every epoch of an incremental step."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.old: dict[str, torch.Tensor] = {}

    def begin_step(self, model: nn.Module, step: int) -> None:  # noqa: D102
        self.old = (
            {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad} if step > 0 else {}
        )

    @torch.no_grad()
    def after_epoch(self, model: nn.Module) -> None:  # noqa: D102
        for name, param in model.named_parameters():
            old = self.old.get(name)
            if old is not None and old.shape == param.shape:
                param.mul_(1 - self.alpha).add_(old, alpha=self.alpha)


def build_regularizer(cfg: dict) -> Regularizer:
    """The regularizer named by ``incremental.regularizer.type``."""
    kind = cfg["type"]
    if kind == "gradient_projection":
        return GradientProjection(energy=cfg["gp_energy"], max_samples=cfg["gp_max_samples"])
    if kind == "ema_pull":
        return EMAPull(alpha=cfg["ema_alpha"])
    return NoRegularizer()
