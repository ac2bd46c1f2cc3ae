"""Training loss of IB-IUMAD (Algorithm 1, line 7): ``L = L_rgb + L_depth + L_IB + L_fusion``.

- ``rgb_ce`` / ``depth_ce``: cross-entropy of the conditioner's object-class logits vs ``class_id``;
- ``ib``: ``T² · KL(softmax(teacher.detach() / T) ‖ softmax(student / T))`` between the class
  predictions of the unfiltered (``F_fusion``, teacher) and filtered (``F^g``, student) fused features,
  DMIB's self-distillation form; ``T`` is the fusion module's temperature, read from the model outputs;
- ``fusion``: ``MSE(F^g, clean features)``;
- ``ib_ce`` (not in the paper; off by default): cross-entropy of the teacher prediction vs ``class_id``.
  With the teacher detached, nothing else trains the class head ``h`` to predict classes, so ``ib``
  alone can be driven to zero by an uninformative ``h``; a positive ``ib_ce`` weight anchors ``h``.

Each term is computed only when the model produced its inputs (e.g. no ``rgb_ce`` without a
conditioner or without RGB) and its weight is non-zero; ``total`` is the weighted sum.
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


def ib_loss(teacher: Tensor, student: Tensor, temperature: float | Tensor) -> Tensor:
    """``T² · KL(softmax(teacher / T) ‖ softmax(student / T))``, batch mean; no gradient to the teacher.

    Args:
        teacher: ``(B, K)`` logits of ``h(F_fusion)``.
        student: ``(B, K)`` logits of ``h(F^g)``.
        temperature: ``T > 0``.

    Returns:
        0-d loss.
    """
    teacher_log_prob = F.log_softmax(teacher.detach() / temperature, dim=1)
    student_log_prob = F.log_softmax(student / temperature, dim=1)
    kl = F.kl_div(student_log_prob, teacher_log_prob, reduction="batchmean", log_target=True)
    return kl * temperature**2


class Criterion:
    """Weighted sum of the IB-IUMAD loss terms.

    Args:
        weights: term → weight (``>= 0``); terms not given take :data:`DEFAULT_WEIGHTS`.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in weights.items()}}

    def __call__(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], trainable_only: bool = False
    ) -> dict[str, Tensor]:
        """Compute the losses.

        Args:
            outputs: the model's outputs (``"feature"``, ``"feature_rec"`` ``(B, C, h, w)``; optionally
                ``"logits_rgb"``, ``"logits_depth"``, ``"ib_teacher"``, ``"ib_student"`` ``(B, K)`` and
                ``"ib_temperature"`` 0-d).
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
        if "ib_teacher" in outputs and "ib_student" in outputs:
            if self.weights["ib"]:
                if "ib_temperature" not in outputs:
                    raise ValueError("outputs have IB logits but no 'ib_temperature'")
                temperature = outputs["ib_temperature"]  # a 0-d tensor: no device-to-host sync
                losses["ib"] = ib_loss(outputs["ib_teacher"], outputs["ib_student"], temperature)
            if self.weights["ib_ce"]:
                teacher = outputs["ib_teacher"]
                losses["ib_ce"] = F.cross_entropy(teacher, _class_ids(teacher, batch))
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
