"""Training loss of IB-IUMAD (Algorithm 1, line 7): ``L = L_rgb + L_depth + L_IB + L_fusion``.

- ``rgb_ce`` / ``depth_ce``: cross-entropy of the conditioner's object-class logits vs ``class_id``;
- the fusion module's own terms, by name: ``outputs["aux_losses"]`` (name → 0-d loss it computed, e.g.
  IB fusion's ``ib``, :func:`models.fusion.ib_fusion.ib_loss`) and ``outputs["class_logits"]`` (name →
  ``(B, K)`` logits trained with a cross-entropy vs ``class_id``, e.g. IB fusion's ``ib_ce``: not in the
  paper, off by default; with the teacher detached nothing else trains its class head to predict
  classes, so a positive ``ib_ce`` weight anchors it);
- ``fusion``: ``MSE(F^g, clean features)``.

A term is computed only when the model produced its inputs (e.g. no ``rgb_ce`` without a conditioner
or without RGB) and its weight (``criterion.weights``, by name) is non-zero; ``total`` is the weighted
sum. The criterion knows no fusion module's output keys: a new fusion adds its terms and their weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.config import schema_defaults
from utils.errors import ConfigError

__all__ = ["Criterion", "build_criterion", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS: dict[str, float] = schema_defaults("criterion.weights")


def _class_ids(logits: Tensor, batch: Mapping[str, Any]) -> Tensor:
    """``batch["class_id"]`` as a ``(B,)`` long tensor on the logits' device, checked against ``K``.

    The range is checked on the tensor as given: pass the labels on the CPU (as the step trainer does), and the
    check costs no device-to-host sync.
    """
    if "class_id" not in batch:
        raise ValueError("the batch has no 'class_id', needed by the classification losses")
    given = torch.as_tensor(batch["class_id"]).long().view(-1)
    if given.shape[0] != logits.shape[0]:
        raise ValueError(f"class_id has {given.shape[0]} entries for a batch of {logits.shape[0]}")
    labels = given.tolist()  # on the CPU: plain Python numbers, no device-to-host sync
    if labels and (min(labels) < 0 or max(labels) >= logits.shape[1]):
        raise ValueError(
            f"class_id range [{min(labels)}, {max(labels)}] outside the {logits.shape[1]} classes "
            "of the class heads (call model.grow_classes for new classes)"
        )
    return given.to(logits.device, non_blocking=True)


class Criterion:
    """Weighted sum of the IB-IUMAD loss terms.

    Args:
        weights: term → weight (``>= 0``); terms not given take :data:`DEFAULT_WEIGHTS`.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in weights.items()}}

    def _weight(self, name: str) -> float:
        """The weight of a term the model produced; a term without a weight in ``criterion.weights`` is an error."""
        if name not in self.weights:
            raise ValueError(f"the model produces a loss term '{name}' that criterion.weights has no weight for; "
                             f"terms with weights: {sorted(self.weights)}")
        return self.weights[name]

    def __call__(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], trainable_only: bool = False
    ) -> dict[str, Tensor]:
        """Compute the losses.

        Args:
            outputs: the model's outputs (``"feature"``, ``"feature_rec"`` ``(B, C, h, w)``; optionally
                ``"logits_rgb"``, ``"logits_depth"`` ``(B, K)``, ``"aux_losses"`` (name → 0-d) and
                ``"class_logits"`` (name → ``(B, K)``)).
            batch: needs ``"class_id"`` ``(B,)`` when a classification term applies.
            trainable_only: leave out the terms that train nothing (no gradient reaches a trainable parameter, e.g.
                the class heads' CE while an incremental step trains only class adapters), so the log shows only
                what is trained; the gradient is the same either way.

        Returns:
            The applicable terms (unweighted) and ``"total"`` (weighted sum), all 0-d tensors.
        """
        losses: dict[str, Tensor] = {}
        for modality in ("rgb", "depth"):
            key = f"logits_{modality}"
            if key in outputs and self.weights[f"{modality}_ce"]:
                logits = outputs[key]
                losses[f"{modality}_ce"] = F.cross_entropy(logits, _class_ids(logits, batch))
        for name, value in outputs.get("aux_losses", {}).items():
            if self._weight(name):
                losses[name] = value.float()
        for name, logits in outputs.get("class_logits", {}).items():
            if self._weight(name):
                losses[name] = F.cross_entropy(logits.float(), _class_ids(logits, batch))
        if self.weights["fusion"]:
            if "feature_rec" not in outputs or "feature" not in outputs:
                raise ValueError("outputs lack 'feature_rec'/'feature' needed by the fusion loss")
            losses["fusion"] = F.mse_loss(outputs["feature_rec"], outputs["feature"].detach())
        if trainable_only:
            losses = {name: value for name, value in losses.items() if value.requires_grad}
        if not losses:
            raise ValueError(f"no loss term applies to outputs {sorted(outputs)} with weights {self.weights}")
        losses["total"] = sum(self.weights[name] * value for name, value in losses.items())
        return losses


def build_criterion(weights: Mapping[str, Any] | None = None) -> Criterion:
    """Validate the loss weights and build the criterion.

    Args:
        weights: term → non-negative number; valid terms are the keys of :data:`DEFAULT_WEIGHTS`.

    Raises:
        ConfigError: unknown term, non-numeric or negative weight.
    """
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ConfigError(f"loss weights: unknown terms {unknown}; valid: {sorted(DEFAULT_WEIGHTS)}")
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"loss weights: '{name}' must be a number >= 0, got {value!r}")
    return Criterion(weights)
