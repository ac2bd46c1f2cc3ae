"""``incremental.regularizer.type: iuf``: the incremental update of IUF's release (IB-IUMAD's is the same).

In every incremental step (the base step trains with the trainer's AdamW and only collects bases):

1. Anchor: θ_old, a frozen copy of the trainable parameters where the step starts (the previous
   step's final weights).
2. Every iteration, before the forward pass: θ ← α·θ_old + (1 − α)·θ (α = 0.05).
3. The loss is the configured criterion; ``trainer.clip_grad_norm`` clips the gradient (0.1 in the
   paper's config), then :class:`~utils.optimizer.ProjectedSGD` at ``lr`` 1 (no momentum, no weight
   decay; ``trainer.lr`` does not apply in these steps) updates θ.
4. Inside that update, the gradient of the weight and the bias of every FFN output linear
   (``ffn_out``, the release's ``linear2``) of both modalities' reconstruction transformers is projected
   on its output side: ``d ← Vᵀ diag(w) V d`` with ``w_i = ln(i + 1) / ln(d)``, i = 0..d−1, so the most
   dominant direction is frozen (w₀ = 0) and the weakest is free, and ``V`` ``(d, d)`` the right-singular
   vectors of the matrix of per-image token-averaged outputs of that layer (eval mode) on the training
   images of every earlier step.

Each iteration moves θ by at most ``clip`` (``lr`` 1, and the projection never lengthens a vector)
and the pull removes α of the distance to θ_old, so ‖θ − θ_old‖ ≤ clip / α whatever the epochs.

The outputs of earlier steps are not kept row by row: the carried state holds ``R = diag(S)·Vᵀ`` of
their SVD per layer (at most d × d), and the SVD of ``[R; new rows]`` has the same right-singular
vectors and values as the SVD of all rows stacked (the same Gram matrix).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor, nn

from datasets import build_loader
from engine.batch import forward_batch
from engine.hooks import StepContext
from engine.strategies.registry import Strategy, register_strategy
from utils.config import Field
from utils.optimizer import ProjectedSGD

__all__ = ["IUFUpdate", "protected_layers", "log_weights", "output_projector"]

LOGGER = logging.getLogger(__name__)


def protected_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """Name → FFN output linear (``ffn_out``) of every encoder and decoder layer of the reconstruction networks."""
    reconstructions = getattr(model, "reconstructions", model)
    return {
        f"reconstructions.{name}": module
        for name, module in reconstructions.named_modules()
        if name.endswith("ffn_out") and isinstance(module, nn.Linear)
    }


def log_weights(width: int) -> Tensor:
    """``w_i = ln(i + 1) / ln(d)`` for i = 0..d−1, shape ``(d,)`` (w₀ = 0, w_{d−1} = 1)."""
    return torch.log(torch.arange(width, dtype=torch.float64) + 1) / math.log(max(width, 2))


def output_projector(rows: Tensor) -> Tensor:
    """``Vᵀ diag(w) V`` ``(d, d)``, ``V`` the right-singular vectors (all d, strongest first) of ``rows`` (n, d)."""
    _, _, v = torch.linalg.svd(rows.double(), full_matrices=True)  # v: (d, d), rows = right-singular vectors
    return v.T @ torch.diag(log_weights(v.shape[0])) @ v


def _gram_root(rows: Tensor) -> Tensor:
    """``diag(S) Vᵀ`` ``(k, d)`` of ``rows`` ``(n, d)``: the same Gram matrix as ``rows`` in at most d rows."""
    _, s, vh = torch.linalg.svd(rows.double(), full_matrices=False)
    return s[:, None] * vh


@register_strategy("iuf")
class IUFUpdate(Strategy):
    """The release's update: per-iteration pull, clipped projected SGD at lr 1 (see the module docstring).

    Args:
        alpha: share of the anchor θ_old in the per-iteration pull.
        lr: learning rate of the incremental steps' SGD.
    """

    OPTIONS = {
        "alpha": Field((int, float), 0.05, bounds=(0, 1)),
        "lr": Field((int, float), 1.0, bounds=(0, None)),
    }

    def __init__(self, alpha: float, lr: float) -> None:
        super().__init__(alpha=alpha, lr=lr)
        self.alpha, self.lr = float(alpha), float(lr)
        self.roots: dict[str, Tensor] = {}  # layer → diag(S) Vᵀ of its outputs on every earlier step's images
        self.anchor: dict[str, Tensor] = {}

    def before_step(self, ctx: StepContext) -> None:  # noqa: D102
        params = ctx.model.named_parameters()
        self.anchor = {n: p.detach().clone() for n, p in params if p.requires_grad} if ctx.spec.index > 0 else {}

    def build_optimizer(self, ctx: StepContext) -> torch.optim.Optimizer | None:  # noqa: D102
        if ctx.spec.index == 0:
            return None
        projectors = {}
        for name, layer in protected_layers(ctx.model).items():
            if name not in self.roots:
                continue
            projector = output_projector(self.roots[name]).to(layer.weight.device, layer.weight.dtype)
            projectors.update({p: projector for p in (layer.weight, layer.bias) if p is not None and p.requires_grad})
        LOGGER.info("step %d: SGD at lr %g with the output-side projection of %d layers, pull %g per iteration",
                    ctx.spec.index, self.lr, len(projectors) // 2, self.alpha)
        trainable = [p for p in ctx.model.parameters() if p.requires_grad]
        return ProjectedSGD(trainable, lr=self.lr, projectors=projectors)

    @torch.no_grad()
    def before_iteration(self, ctx: StepContext) -> None:  # noqa: D102
        if not self.anchor:
            return
        for name, param in ctx.model.named_parameters():
            old = self.anchor.get(name)
            if old is not None:
                param.mul_(1 - self.alpha).add_(old, alpha=self.alpha)

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        """Add the step's per-image token-averaged ``ffn_out`` outputs (eval mode) to every layer's basis."""
        self.anchor = {}
        rows = self._layer_outputs(ctx)
        for name, new in rows.items():
            stacked = new if name not in self.roots else torch.cat([self.roots[name], new])
            self.roots[name] = _gram_root(stacked)
        LOGGER.info("step %d: bases of %d layers from %d training images", ctx.spec.index, len(rows),
                    len(ctx.spec.train_set))

    def _layer_outputs(self, ctx: StepContext) -> dict[str, Tensor]:
        """Layer → ``(n, d)`` token-averaged outputs on the step's training images, float64 on the CPU."""
        layers = protected_layers(ctx.model)
        collected: dict[str, list[Tensor]] = {name: [] for name in layers}

        def keep(name: str):
            def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
                collected[name].append(output.detach().mean(dim=1).double().cpu())  # (B, L, d) -> (B, d)

            return hook

        handles = [layer.register_forward_hook(keep(name)) for name, layer in layers.items()]
        loader = build_loader(ctx.spec.train_set, ctx.cfg["dataset"]["eval_batch_size"], 0, shuffle=False, seed=0)
        was_training = ctx.model.training
        ctx.model.eval()
        try:
            for batch in loader:
                forward_batch(ctx.model, batch, ctx.device, ctx.spec.uses_cache, ctx.cfg["trainer"]["precision"])
        finally:
            for handle in handles:
                handle.remove()
            ctx.model.train(was_training)
        return {name: torch.cat(rows) for name, rows in collected.items() if rows}

    def carried_state(self) -> dict[str, Any]:  # noqa: D102
        return {"roots": dict(self.roots)}

    def load_carried_state(self, state: dict[str, Any]) -> None:  # noqa: D102
        self.roots = dict(state.get("roots", {}))
